#!/usr/bin/env python3
"""Writes the hand-made seed corpora under fuzz/corpus/ (see FUZZING.md for each format).

Real gossip seeds come from two agents talking (`write_gossip_seeds` in
tests/tests/fuzz_corpus_replay.rs); agent_ops seeds are byte strings that `arbitrary` decodes
into op sequences. Rerunning this script rewrites the same files; libFuzzer's own additions
(hash-named files) are left alone.
"""
import os, random, struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

# ---- msgpack helpers (smallest forms, as rmp/Go write them) ----
def mstr(s):
    b = s.encode() if isinstance(s, str) else s
    n = len(b)
    if n < 32: return bytes([0xa0 | n]) + b
    if n < 256: return b"\xd9" + bytes([n]) + b
    return b"\xda" + struct.pack(">H", n) + b
def mbin(b):
    return b"\xc4" + bytes([len(b)]) + b
def muint(v):
    if v < 128: return bytes([v])
    if v < 256: return b"\xcc" + bytes([v])
    if v < 65536: return b"\xcd" + struct.pack(">H", v)
    if v < 2**32: return b"\xce" + struct.pack(">I", v)
    return b"\xcf" + struct.pack(">Q", v)
def mmap(pairs):
    n = len(pairs)
    out = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
    for k, v in pairs:
        out += k + v
    return out
def marr(items):
    n = len(items)
    out = bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)
    return out + b"".join(items)
def hdr(cmd, seq):
    return mmap([(mstr("Command"), mstr(cmd)), (mstr("Seq"), muint(seq))])

HS = hdr("handshake", 0) + mmap([(mstr("Version"), muint(1))])

# ---- HTTP ----
def post(body, extra=b""):
    if isinstance(body, str): body = body.encode()
    return (b"POST /api HTTP/1.1\r\nHost: localhost:8563\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n" + extra +
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

# The seed's curl bodies (issue seed 000), verbatim with their newlines.
CURL = {
    "init_session": '\n{\n"action":"init_session"\n}\n',
    "join_session": '\n{\n"action":"join_session",\n"sessionId" : "$SID"\n}\n',
    "pull_results": '\n{\n"action":"pull_results",\n"sessionId" : "$SID",\n"consumerId" : "$CID"\n}\n',
    "async_exec": '\n{\n"action":"async_exec",\n"command":"watch demo.MathGame primeFactors \\"{params, returnObj, throwExp}\\" ",\n"sessionId" : "$SID"\n}\n',
    "interrupt_job": '\n{\n"action":"interrupt_job",\n"sessionId" : "$SID"\n}\n',
    "close_session": '\n{\n"action":"close_session",\n"sessionId" : "$SID"\n}\n',
}
API = dict(CURL)
API.update({
    "exec_echo": '{"action":"exec","command":"echo hello"}',
    "exec_host": '{"action":"exec","command":"hostcmd a b","execTimeout":1000}',
    "exec_host_session": '{"action":"exec","command":"hostcmd \'x y\' \\"z\\"","sessionId":"$SID"}',
    "exec_timeout_str": '{"action":"exec","command":"echo 1","execTimeout":"250"}',
    "exec_timeout_bad": '{"action":"exec","command":"echo 1","execTimeout":"soon"}',
    "exec_version": '{"action":"exec","command":"version","requestId":"r1"}',
    "exec_help": '{"action":"exec","command":"help"}',
    "exec_stats": '{"action":"exec","command":"stats"}',
    "exec_members": '{"action":"exec","command":"members"}',
    "exec_pipe": '{"action":"exec","command":"echo abc | grep b"}',
    "exec_unknown": '{"action":"exec","command":"nosuch --flag"}',
    "exec_empty_cmd": '{"action":"exec","command":""}',
    "async_host": '{"action":"async_exec","command":"hostcmd 1","sessionId":"$SID"}',
    "session_info": '{"action":"session_info","sessionId":"$SID"}',
    "join_bad": '{"action":"join_session","sessionId":"00000000-0000-0000-0000-000000000000"}',
    "pull_no_consumer": '{"action":"pull_results","sessionId":"$SID"}',
    "unknown_action": '{"action":"frobnicate"}',
    "no_action": '{"sessionId":"$SID"}',
    "null_action": '{"action":null}',
    "array": '["init_session"]',
    "empty": '',
    "spaces": '   \n ',
    "not_json": '{"action":',
    "deep": '{"action":"exec","command":"echo","x":' + '[' * 200 + ']' * 200 + '}',
    "unicode": '{"action":"exec","command":"echo \\u00e9\\ud83d\\ude00 \\u0000"}',
    "dup_keys": '{"action":"init_session","action":"exec","command":"echo"}',
    "number_cmd": '{"action":"exec","command":12}',
    "big_number": '{"action":"exec","command":"echo","execTimeout":1e400}',
})
for k, v in API.items():
    put("api_json", k, v.encode())

HTTP = {
    "curl_init": post(CURL["init_session"]),
    "exec_echo": post(API["exec_echo"]),
    "two_pipelined": post(API["exec_echo"]) + post(API["exec_version"]),
    "keepalive_close": post(API["exec_echo"], b"Connection: close\r\n"),
    "expect_100": post(API["exec_echo"], b"Expect: 100-continue\r\n"),
    "chunked": b"POST /api HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n0\r\n\r\n",
    "get_api": b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n",
    "get_root": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "options": b"OPTIONS /api HTTP/1.1\r\nHost: x\r\nOrigin: http://a\r\n\r\n",
    "http10": b"POST /api HTTP/1.0\r\nContent-Length: 25\r\n\r\n{\"action\":\"init_session\"}",
    "no_length": b"POST /api HTTP/1.1\r\nHost: x\r\n\r\n",
    "two_lengths": b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "bad_length": b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "huge_length": b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "over_body": b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n{",
    "long_header": b"POST /api HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    "many_headers": b"POST /api HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(40)) + b"\r\n",
    "garbage": b"\x00\x01\x02\xff\r\n\r\n",
    "bare_lf": b"POST /api HTTP/1.1\nHost: x\nContent-Length: 25\n\n{\"action\":\"init_session\"}",
    "pull_then_more": post('{"action":"pull_results","sessionId":"x","consumerId":"y"}') + post(API["exec_echo"]),
    "half_head": b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Le",
    "half_body": b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"action\":",
    "rpc_on_http": HS,
    "path_query": b"POST /api?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    "lower_method": b"post /api HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    "http2_preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}
# ctl: bit0 reset, bit1 small limits, bits2.. chunk seed
for k, v in HTTP.items():
    put("http_stream", k + ".eof", b"\x00" + v)
for i, k in enumerate(["curl_init", "two_pipelined", "over_body", "long_header", "expect_100", "pull_then_more"]):
    put("http_stream", k + ".split_small", bytes([2 | ((i + 1) << 2)]) + HTTP[k])
    put("http_stream", k + ".reset", bytes([1 | ((i + 3) << 2)]) + HTTP[k])

# The client stalls (bit 0): a head, or a body, that never completes meets its deadline (408).
for k in ["half_head", "half_body", "expect_100", "curl_init"]:
    put("http_stream", k + ".stall", b"\x01" + HTTP[k])
put("http_stream", "half_body.stall_small", b"\x03" + HTTP["half_body"])

# ---- RPC ----
def body(pairs): return mmap([(mstr(k), v) for k, v in pairs])
RPC_AFTER_HS = {
    # spec §5 transcripts, after the handshake
    "members": hdr("members", 1),
    "bogus": hdr("bogus", 2),
    "join": hdr("join", 2) + body([("Existing", marr([mstr("127.0.0.1:7947")])), ("Replay", b"\xc2")]),
    "join_wan": hdr("join", 3) + body([("Existing", marr([mstr("127.0.0.1:8302")])), ("WAN", b"\xc3")]),
    "force_leave": hdr("force-leave", 1) + body([("Node", mstr("nosuch")), ("Prune", b"\xc2")]),
    "stats": hdr("stats", 2),
    "monitor_stop": hdr("monitor", 1) + body([("LogLevel", mstr("debug"))]) + hdr("monitor", 2) + body([("LogLevel", mstr("INFO"))])
                    + hdr("stop", 3) + body([("Stop", muint(99))]) + hdr("stop", 4) + body([("Stop", muint(1))]),
    "stream_event": hdr("stream", 10) + body([("Type", mstr("*"))]) + hdr("stream", 10) + body([("Type", mstr("user"))])
                    + hdr("stream", 11) + body([("Type", mstr("user:deploy,member-update"))]) + hdr("stream", 8) + body([("Type", mstr("bogus-event"))])
                    + hdr("event", 1) + bytes.fromhex("83a44e616d65a66465706c6f79a75061796c6f6164c40739633435623837a8436f616c65736365c3"),
    "query": hdr("query", 3) + bytes.fromhex("87ab46696c7465724e6f64657390aa46696c7465725461677380aa5265717565737441636bc3ab52656c6179466163746f7200a754696d656f7574ce77359400a44e616d65a46c6f6164a75061796c6f6164c40331356d"),
    "respond": hdr("respond", 12) + bytes.fromhex("82a2494401a75061796c6f6164c404312e3032"),
    "tags": hdr("tags", 5) + body([("Tags", mmap([(mstr("role"), mstr("db"))])), ("DeleteTags", marr([mstr("x")]))]),
    "members_filtered": hdr("members-filtered", 6) + body([("Tags", mmap([(mstr("role"), mstr("d.*"))])), ("Status", mstr("alive")), ("Name", mstr("t.*"))]),
    "members_lan_wan": hdr("members-lan", 7) + hdr("members-wan", 8),
    "reload": hdr("reload", 9),
    "leave": hdr("leave", 1),
    "get_coordinate": hdr("get-coordinate", 13) + body([("Node", mstr("tandem"))]) + hdr("get-coordinate", 14) + body([("Node", mstr("nosuch"))])
                      + hdr("get-coordinate", 15) + b"\x80" + hdr("get-coordinate", 16) + b"\xc0" + hdr("get-coordinate", 17) + body([("Node", muint(1))]),
    "handshake_again": hdr("handshake", 1) + body([("Version", muint(1))]),
    "auth_bad_then_good": hdr("auth", 2) + body([("AuthKey", mstr("nope"))]) + hdr("join", 3) + body([("Existing", marr([])), ("Replay", b"\xc2")]) + hdr("auth", 4) + body([("AuthKey", mstr("s3cret"))]) + hdr("members", 5),
    "array_header": marr([mstr("members"), muint(3)]),
    "nil_header": b"\xc0",
    "token_header": mmap([(mstr("Command"), mstr("members")), (mstr("Seq"), muint(1)), (mstr("Token"), mstr("t"))]),
    "seq_big": hdr("members", 2**64 - 1),
    "seq_str": mmap([(mstr("Command"), mstr("members")), (mstr("Seq"), mstr("1"))]),
    "seq_neg": mmap([(mstr("Command"), mstr("members")), (mstr("Seq"), b"\xff")]),
    "seq_float": mmap([(mstr("Command"), mstr("members")), (mstr("Seq"), b"\xcb" + struct.pack(">d", 1.0))]),
    "bin_command": mmap([(mstr("Command"), mbin(b"members")), (mstr("Seq"), muint(1))]),
    "join_overflow_body": hdr("join", 2) + body([("Existing", marr([mstr("a")])), ("Replay", muint(2))]),
    "reserved": b"\xc1",
    "str32_huge": b"\xdb\x7f\xff\xff\xff",
    "array32_huge": b"\xdd\xff\xff\xff\xff",
    "ext": b"\xd4\x01\x02" + hdr("members", 1),
    "deep": b"\x91" * 500 + b"\xc0",
    "pipelined": hdr("members", 1) + hdr("stats", 2) + hdr("members-lan", 3),
}
# ctl: bit0 reset, bit1 handshake prefix, bit2 small limits, bit3 rpc_auth, bits4.. split seed
for k, v in RPC_AFTER_HS.items():
    put("rpc_stream", k + ".hs", b"\x02" + v)
RPC_RAW = {
    "handshake": HS,
    "handshake_v2": hdr("handshake", 7) + body([("Version", muint(2))]) + hdr("members", 8),
    "handshake_nobody": hdr("handshake", 1) + hdr("members", 2),
    "before_handshake": hdr("members", 1),
    "http_on_rpc": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "fixstr": mstr("members"),
    "reserved": b"\xc1",
    "half_header": HS[:9],
}
for k, v in RPC_RAW.items():
    put("rpc_stream", k + ".raw", b"\x00" + v)
for i, k in enumerate(["members", "monitor_stop", "stream_event", "auth_bad_then_good", "join", "pipelined"]):
    put("rpc_stream", k + ".auth_small_split", bytes([2 | 4 | 8 | ((i + 1) << 4)]) + RPC_AFTER_HS[k])
    put("rpc_stream", k + ".reset_split", bytes([1 | 2 | ((i + 5) << 4)]) + RPC_AFTER_HS[k])
    put("rpc_stream", k + ".noauth", bytes([8]) + RPC_AFTER_HS[k])

# The client stalls (bit 0): before the handshake, after it without the auth the agent
# requires (its auth deadline), mid-header, and idle after a request.
put("rpc_stream", "nothing.stall", b"\x01")
put("rpc_stream", "handshake.stall_auth", bytes([1 | 8]) + HS)
put("rpc_stream", "half_header.stall", b"\x01" + HS[:9])
put("rpc_stream", "members.stall", bytes([1 | 2]) + RPC_AFTER_HS["members"])

# ---- msgpack_len: single messages ----
ML = {
    "hs_header": hdr("handshake", 0),
    "members_header": hdr("members", 1),
    "members_seq_big": hdr("members", 2**40),
    "array_header": marr([mstr("stats"), muint(9)]),
    "array_long": marr([mstr("stats"), muint(9), mstr("tok"), muint(1)]),
    "nil": b"\xc0",
    "empty_map": b"\x80",
    "empty_array": b"\x90",
    "token": mmap([(mstr("Command"), mstr("x")), (mstr("Seq"), muint(3)), (mstr("Token"), mstr("t"))]),
    "fixint": b"\x05",
    "fixstr": mstr("members"),
    "bool": b"\xc3",
    "float": b"\xcb" + struct.pack(">d", 1.5),
    "bin": mbin(b"abc"),
    "reserved": b"\xc1",
    "reserved_inside": b"\x82\xa7Command\xc1",
    "str8_noncanon": mmap([(mstr("Command"), b"\xd9\x07members"), (mstr("Seq"), muint(1))]),
    "seq_signed": mmap([(mstr("Command"), mstr("members")), (mstr("Seq"), b"\xd0\x05")]),
    "seq_neg": mmap([(mstr("Command"), mstr("members")), (mstr("Seq"), b"\xff")]),
    "bin_key": mmap([(mbin(b"Command"), mstr("members")), (mstr("Seq"), muint(1))]),
    "dup_key": mmap([(mstr("Seq"), muint(1)), (mstr("Seq"), muint(2))]),
    "map16": b"\xde\x00\x01" + mstr("Seq") + muint(4),
    "map32": b"\xdf\x00\x00\x00\x01" + mstr("Seq") + muint(4),
    "array16": b"\xdc\x00\x02" + mstr("members") + muint(4),
    "ext_fix": b"\xd4\x01\x02",
    "ext8": b"\xc7\x03\x01abc",
    "ext16": b"\xc8\x00\x01\x05z",
    "ext32_trunc": b"\xc9\x00\x00\x00\x10\x01",
    "str32_huge": b"\xdb\x7f\xff\xff\xff",
    "bin32_huge": b"\xc6\x00\x10\x00\x00",
    "array32_huge": b"\xdd\xff\xff\xff\xff",
    "map32_huge": b"\xdf\x00\x01\x00\x00",
    "str16_trunc": b"\xda\x00\x10abc",
    "deep_1100": b"\x91" * 1100 + b"\xc0",
    "deep_map": b"\x81\xc0" * 300 + b"\xc0",
    "nested_ignored": mmap([(mstr("Command"), mstr("a")), (mstr("Extra"), marr([mmap([(mstr("k"), mbin(b"\xc1\xc1"))])]))]),
    "u64": b"\xcf" + b"\xff" * 8,
    "i64": b"\xd3" + b"\x80" + b"\x00" * 7,
    "f32": b"\xca\x00\x00\x00\x00",
    "empty": b"",
}
for k, v in ML.items():
    put("msgpack_len", k, v)

# ---- agent_ops: byte strings `arbitrary` turns into op sequences ----
rng = random.Random(6)
for i in range(32):
    n = rng.choice([16, 64, 256, 1024])
    put("agent_ops", "random-%02d" % i, bytes(rng.randrange(256) for _ in range(n)))

# ---- key_query: records [ctl][len][body]; ctl & 3 = install/use/remove/list, bit 2 (first
# record) = the node starts encrypted with [0x5a]*32 ----
def go_raw(b):
    # go-msgpack without WriteExt: fixstr, str16, str32 for strings and []byte alike.
    n = len(b)
    if n < 32: return bytes([0xa0 | n]) + b
    if n < 65536: return b"\xda" + struct.pack(">H", n) + b
    return b"\xdb" + struct.pack(">I", n) + b
def key_req(key): return b"\x07\x81" + go_raw(b"Key") + go_raw(key)
def krec(ctl, body):
    assert len(body) < 256
    return bytes([ctl, len(body)]) + body
def key_answer(result, message=b"", keys=None):
    out = b"\x08\x84" + go_raw(b"Keys")
    out += b"\xc0" if keys is None else bytes([0x90 | len(keys)]) + b"".join(go_raw(k) for k in keys)
    out += go_raw(b"Message") + go_raw(message) + go_raw(b"PrimaryKey") + go_raw(b"")
    out += go_raw(b"Result") + (b"\xc3" if result else b"\xc2")
    return out
OLD, NEW = bytes([0x5a]) * 32, bytes(range(16))
put("key_query", "rotate", krec(4, key_req(NEW)) + krec(1, key_req(NEW)) + krec(2, key_req(OLD)) + krec(3, b""))
put("key_query", "remove_primary", krec(6, key_req(OLD)) + krec(3, b""))
put("key_query", "use_unknown", krec(5, key_req(NEW)))
put("key_query", "bad_lengths", krec(4, key_req(b"\x01" * 5)) + krec(4, key_req(b"")) + krec(4, key_req(b"\x02" * 33)))
put("key_query", "plaintext_node", krec(0, key_req(NEW)) + krec(1, key_req(NEW)) + krec(2, key_req(NEW)) + krec(3, b""))
put("key_query", "keyring_full", b"".join(krec(4, key_req(bytes([i]) * 16)) for i in range(40)) + krec(3, b""))
put("key_query", "malformed_requests", b"".join(krec(4 | op, body) for op in range(3) for body in [
    b"", b"\x07", b"\x08\x80", b"\x07\x81\xa3Key\x05", b"\x07\x81\xa3Key\xdb\xff\xff\xff\xff",
    b"\x07\xdf\xff\xff\xff\xff", b"\x07\x92\xa3Key\xb0" + NEW, b"\x07\x82\xa1X\x01\xa3Key\xc4\x10" + NEW,
    b"\x07\x81\xa3Key\xc0", b"\x07\x81\xa3Key\x81\xa1a\xa1b",
]))
put("key_query", "answers", b"".join(krec(3, body) for body in [
    key_answer(True), key_answer(False, b"no"), key_answer(True, keys=[b"k1", b"k2"]),
    b"\x08\x81\xa4Keys\xdc\xff\xff", b"\x08\x81\xa6Result\x07", b"\x09\x80", b"\x08",
]))
put("key_query", "base64_keys", b"".join(krec(4 | op, body) for op in range(3) for body in [
    b"notbase64!", b"AA==AAAA", b"AA=", b"A===", b"AAECAwQFBgcICQoLDA0ODw==", b"AA\n==", "é".encode(),
]))

# ---- snapshot_file: [ctl][file]; bit 0 rejoin_after_leave, bits 1-7 the chunk size ----
import random as _random
SERF = (b"alive: a 10.0.0.1:8301\nalive: name with spaces [::1]:7946\nalive: b 10.0.0.2:8301\n"
        b"not-alive: b\nclock: 5\nevent-clock: 9\nquery-clock: 3\n# comment\ncoordinate: {\"x\":1}\n")
put("snapshot_file", "serf_format", b"\x00" + SERF)
put("snapshot_file", "serf_format_in_chunks_of_3", bytes([3 << 1]) + SERF)
put("snapshot_file", "leave_then_alive", b"\x00" + SERF + b"leave\nalive: c 10.0.0.3:1\nevent-clock: 2\n")
put("snapshot_file", "leave_with_rejoin_after_leave", b"\x01" + SERF + b"leave\n")
put("snapshot_file", "overlong_line", bytes([7 << 1]) + b"alive: " + b"n" * 2000 + b" 10.0.0.1:1\nevent-clock: 5\n")
put("snapshot_file", "name_over_the_limit", b"\x00alive: " + b"n" * 300 + b" 10.0.0.1:1\n")
put("snapshot_file", "binary", b"\x02" + bytes(_random.Random(7).randrange(256) for _ in range(3000)))
put("snapshot_file", "bad_addresses", b"\x00alive: a 10.0.0.1\nalive: a 999.0.0.1:1\nalive: a 10.0.0.1:99999\n"
    b"alive: a host.example:8301\nalive: 10.0.0.1:1\nalive:  10.0.0.1:1\nalive: a [::1\nalive: a\x00b 10.0.0.1:1\n")
put("snapshot_file", "huge_clocks", b"\x00clock: 18446744073709551616\nevent-clock: 9223372036854775808\n"
    b"query-clock: -1\nclock: +1\nclock: \nevent-clock: 9223372036854775807\n"
    b"query-clock: 00000000000000000000000000000007\n")
put("snapshot_file", "unterminated_last_line", b"\x04event-clock: 3\nalive: a 10.0.0.1:1")
put("snapshot_file", "more_members_than_the_bound", b"\x00" + b"".join(
    b"alive: n%d 10.0.0.%d:8301\n" % (i, i) for i in range(10)) + b"not-alive: n1\nalive: n42 10.0.0.42:1\n")
put("snapshot_file", "ten_thousand_garbage_lines", b"\x00" + b"x\n" * 10000 + b"event-clock: 1\n")
put("snapshot_file", "not_utf8_and_crlf", b"\x00alive: \xff\xfe 10.0.0.1:1\r\nevent-clock: 4\r\nquery-clock: 2\n")
put("snapshot_file", "own_name_and_duplicates", b"\x00alive: fuzz 127.0.0.1:8301\nalive: a 10.0.0.1:1\nalive: a 10.0.0.2:2\n")
