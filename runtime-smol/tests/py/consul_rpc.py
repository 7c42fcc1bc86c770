#!/usr/bin/env python3
"""Drives tandem's agent RPC with Consul's command set over a raw socket, using the
`msgpack` package (not tandem's code), as a third-party client would.

Usage: consul_rpc.py PORT

Prints one `PASS <check>` line per check and exits 0, or prints `FAIL <check>: <why>`
and exits 1 at the first failure. `leave` runs last: the agent exits after it.
"""

import socket
import sys
import time

import msgpack

TIMEOUT = 10.0


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


class Conn:
    """One RPC connection: Seq counts up from 1, as Consul's Go client does."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.unpacker = msgpack.Unpacker(raw=False)
        self.seq = 0

    def send(self, command, body=None):
        self.seq += 1
        data = msgpack.packb({"Command": command, "Seq": self.seq}, use_bin_type=True)
        if body is not None:
            data += msgpack.packb(body, use_bin_type=True)
        self.sock.sendall(data)
        return self.seq

    def raw(self, n):
        """Exactly n bytes, before any use of the unpacker."""
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            check(chunk, "connection closed while reading %d raw bytes" % n)
            out += chunk
        return out

    def next(self):
        """The next msgpack object on the connection."""
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                pass
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError()
            self.unpacker.feed(chunk)

    def header(self, seq):
        h = self.next()
        check(isinstance(h, dict), "header is not a map: %r" % (h,))
        check(list(h.keys()) == ["Error", "Seq"], "header keys not sorted: %r" % (h,))
        check(h["Seq"] == seq, "expected Seq %d, got %r" % (seq, h))
        return h["Error"]

    def handshake(self):
        seq = self.send("handshake", {"Version": 1})
        check(self.header(seq) == "", "handshake refused")

    def close(self):
        self.sock.close()


def members_lan(port):
    c = Conn(port)
    seq = c.send("handshake", {"Version": 1})
    # The handshake reply's exact bytes: {"Error":"","Seq":1}, keys sorted, fixstr/fixint.
    reply = c.raw(13)
    check(reply == bytes.fromhex("82a54572726f72a0a353657101"), "handshake bytes %s" % reply.hex())
    seq = c.send("members-lan")
    check(c.header(seq) == "", "members-lan error")
    body = c.next()
    members = body["Members"]
    check(len(members) == 1, "one member expected: %r" % (members,))
    m = members[0]
    keys = list(m.keys())
    check(keys == sorted(keys), "member keys not sorted: %r" % keys)
    check(keys == ["Addr", "DelegateCur", "DelegateMax", "DelegateMin", "Name", "Port",
                   "ProtocolCur", "ProtocolMax", "ProtocolMin", "Status", "Tags"],
          "member keys %r" % keys)
    check(isinstance(m["Addr"], bytes) and len(m["Addr"]) in (4, 16), "Addr is not bin: %r" % (m["Addr"],))
    check(m["Addr"] == bytes([127, 0, 0, 1]), "Addr %r" % (m["Addr"],))
    check(m["Name"] == "py-node", "Name %r" % (m["Name"],))
    check(m["Status"] == "alive", "Status %r" % (m["Status"],))
    for tag in ("role", "dc", "build", "vsn"):
        check(tag in m["Tags"], "tag %s missing: %r" % (tag, m["Tags"]))
    check(m["Tags"]["role"] == "node", "a client publishes role=node")
    c.close()
    return "members-lan"


def members_wan(port):
    c = Conn(port)
    c.handshake()
    seq = c.send("members-wan")
    check(c.header(seq) == "", "members-wan error")
    check(c.next() == {"Members": []}, "a client's WAN pool is empty")
    c.close()
    return "members-wan"


def stats(port):
    c = Conn(port)
    c.handshake()
    seq = c.send("stats")
    check(c.header(seq) == "", "stats error")
    body = c.next()
    check(isinstance(body, dict) and body, "stats is not a map: %r" % (body,))
    for section in ("agent", "serf_lan"):
        check(section in body, "section %s missing: %r" % (section, list(body)))
    for name, entries in body.items():
        check(isinstance(entries, dict), "section %s is not a map" % name)
        for k, v in entries.items():
            check(isinstance(v, str), "stats %s.%s is %r, not a string" % (name, k, v))
    check(body["agent"]["name"] == "py-node", "agent.name %r" % (body["agent"].get("name"),))
    c.close()
    return "stats"


def force_leave(port):
    c = Conn(port)
    c.handshake()
    seq = c.send("force-leave", {"Node": "nosuch"})
    check(c.header(seq) == "", "force-leave of an unknown node is no error")
    # No body follows: the next reply is the next request's.
    seq = c.send("stats")
    check(c.header(seq) == "", "stats after force-leave")
    c.next()
    c.close()
    return "force-leave"


def join_wan(port):
    c = Conn(port)
    c.handshake()
    seq = c.send("join", {"Existing": ["127.0.0.1:1"], "WAN": True})
    check(c.header(seq) == "Must be a server to join WAN cluster", "join WAN on a client")
    # The body is sent even on error, or Go clients would hang.
    check(c.next() == {"Num": 0}, "join body")
    c.close()
    return "join-wan"


def monitor_and_reload(port):
    c = Conn(port)
    c.handshake()
    mon = c.send("monitor", {"LogLevel": "bogus"})
    check(c.header(mon) == "Unknown log level: BOGUS", "bad level")
    mon = c.send("monitor", {"LogLevel": "info"})
    check(c.header(mon) == "", "monitor refused")
    # A reload on the same connection: its reply interleaves with the monitor's records,
    # and the reload shows up as a live record.
    reload = c.send("reload")
    wanted = "[INFO] agent: reload requested, reloading configuration"
    seen_reply = False
    seen_live = False
    records = 0
    deadline = time.time() + TIMEOUT
    while not (seen_reply and seen_live):
        check(time.time() < deadline, "no reload record in time")
        h = c.next()
        check(list(h.keys()) == ["Error", "Seq"] and h["Error"] == "", "header %r" % (h,))
        if h["Seq"] == reload:
            seen_reply = True
            continue
        check(h["Seq"] == mon, "record with Seq %r" % (h["Seq"],))
        rec = c.next()
        check(list(rec.keys()) == ["Log"] and isinstance(rec["Log"], str), "record %r" % (rec,))
        check("[DEBUG]" not in rec["Log"], "a DEBUG line passed an INFO monitor")
        records += 1
        if rec["Log"].endswith(wanted):
            seen_live = True
    second = c.send("monitor", {"LogLevel": "info"})
    # Records may still come before this reply.
    while True:
        h = c.next()
        if h["Seq"] == second:
            check(h["Error"] == "Monitor already exists", "second monitor %r" % (h,))
            break
        c.next()
    stop = c.send("stop", {"Stop": mon})
    while True:
        h = c.next()
        if h["Seq"] == stop:
            check(h["Error"] == "", "stop %r" % (h,))
            break
        check(h["Seq"] == mon, "unexpected Seq %r" % (h,))
        c.next()
    # After the stop reply no record comes: a reload's log lines stay off this connection.
    reload = c.send("reload")
    check(c.header(reload) == "", "second reload")
    st = c.send("stats")
    check(c.header(st) == "", "stats after stop (a record came instead?)")
    c.next()
    c.close()
    return "monitor-stop-reload (%d records)" % records


def leave(port):
    c = Conn(port)
    c.handshake()
    seq = c.send("leave")
    check(c.header(seq) == "", "leave refused")
    try:
        extra = c.next()
        raise Fail("a message after the leave reply: %r" % (extra,))
    except EOFError:
        pass
    except ConnectionResetError:
        pass
    # The agent closed the connection as it shut down (spec 5.10).
    c.close()
    return "leave"


def main():
    if len(sys.argv) != 2:
        print("usage: consul_rpc.py PORT", file=sys.stderr)
        return 2
    port = int(sys.argv[1])
    steps = [members_lan, members_wan, stats, force_leave, join_wan, monitor_and_reload, leave]
    for step in steps:
        try:
            print("PASS " + step(port), flush=True)
        except (Fail, EOFError, OSError, KeyError) as e:
            print("FAIL %s: %s: %s" % (step.__name__, type(e).__name__, e), flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
