//! Conformance of the agent RPC's commands (spec `consul-serf-rpc.md` §2, §3, §5.3–§5.6,
//! §5.9, §5.10, §6): the member view and its filters, `stats`, `reload`, `leave`, `tags`,
//! `join`, `force-leave`, and the `auth` gate.
//!
//! Replies are compared as exact bytes where the spec has a transcript, and otherwise
//! decoded with the suite's own msgpack reader and checked to be written as Go writes them.

#[path = "conformance_rpc_support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{
    V, assert_bytes, assert_go_encoded, call, handshaken, hex, map, reply, req, req_with, sim_with,
    strs, to_hex, values,
};
use tandem_core::{ConnId, Effect, Output, VERSION};
use tandem_tests::Sim;

/// The member keys, in Go's sorted order (§2, §5.3).
const MEMBER_KEYS: [&str; 11] = [
    "Addr",
    "DelegateCur",
    "DelegateMax",
    "DelegateMin",
    "Name",
    "Port",
    "ProtocolCur",
    "ProtocolMax",
    "ProtocolMin",
    "Status",
    "Tags",
];

/// `{"Members":[]}`.
const NO_MEMBERS: &str = "81a74d656d6265727390";

/// Sends a bodyless command and returns its reply's body, after checking the header and
/// the encoding.
#[track_caller]
fn body_of(sim: &mut Sim, c: ConnId, cmd: &str, seq: u64) -> V {
    body_of_request(sim, c, &req(cmd, seq), seq)
}

#[track_caller]
fn body_of_request(sim: &mut Sim, c: ConnId, request: &[u8], seq: u64) -> V {
    let got = call(sim, c, request);
    assert_go_encoded(&got);
    let mut vals = values(&got);
    assert_eq!(vals.len(), 2, "header and body: {vals:?}");
    assert_eq!(vals[0], map(&[("Error", "".into()), ("Seq", seq.into())]));
    vals.remove(1)
}

/// The only member of a `{"Members":[...]}` body.
#[track_caller]
fn only_member(body: &V) -> V {
    assert_eq!(body.keys(), ["Members"]);
    let members = body.get("Members").arr();
    assert_eq!(members.len(), 1, "{members:?}");
    members[0].clone()
}

/// A member's tags as sorted (key, value) pairs; Go's map order is random, so order is
/// not part of the contract.
fn tags_of(member: &V) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = member
        .get("Tags")
        .map()
        .iter()
        .map(|(k, v)| (k.str().to_string(), v.str().to_string()))
        .collect();
    tags.sort();
    tags
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

// ----- members (§5.3) ------------------------------------------------------------------

#[test]
fn members_lists_this_node_with_the_eleven_keys_in_gos_order() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let m = only_member(&body_of(&mut sim, c, "members", 1));
    assert_eq!(m.keys(), MEMBER_KEYS);
    assert_eq!(m.get("Addr"), &V::B(vec![127, 0, 0, 1]), "Addr is bin");
    assert_eq!(m.get("Name").str(), "tandem");
    assert_eq!(m.get("Port").u64(), 8301);
    assert_eq!(m.get("Status").str(), "alive");
    assert_eq!(
        tags_of(&m),
        pairs(&[
            ("build", VERSION),
            ("dc", "dc1"),
            ("role", "node"),
            ("vsn", "2")
        ])
    );
    for (min, cur, max) in [
        ("ProtocolMin", "ProtocolCur", "ProtocolMax"),
        ("DelegateMin", "DelegateCur", "DelegateMax"),
    ] {
        let (min, cur, max) = (m.get(min).u64(), m.get(cur).u64(), m.get(max).u64());
        assert!(min <= cur && cur <= max && max <= 255, "{min} {cur} {max}");
    }
}

#[test]
fn members_reply_bytes_follow_the_serf_layout() {
    // §5.3's transcript with this node's name, port and tags: Addr `c4 04 7f000001`,
    // Port as uint16 `cd 20 6d`, strings as fixstr.
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let got = call(&mut sim, c, &req("members", 1));
    let m = only_member(&values(&got)[1]);
    let mut want = reply(1, "");
    want.extend(hex("81a74d656d6265727391 8b a441646472 c4047f000001"));
    for key in &MEMBER_KEYS[1..] {
        want.extend(support::enc(&V::from(*key)));
        want.extend(support::enc(m.get(key)));
    }
    assert_bytes(&got, &want);
    let port = hex("a4506f7274 cd206d");
    assert!(got.windows(port.len()).any(|w| w == port), "Port as uint16");
}

#[test]
fn members_shows_the_configured_name_address_datacenter_and_tags() {
    let mut sim = sim_with(|c| {
        c.node_name = "web-1".into();
        c.lan_addr = SocketAddr::from(([10, 1, 2, 3], 7946));
        c.datacenter = "east".into();
        c.tags.insert("rack".into(), "r7".into());
    });
    let c = handshaken(&mut sim);
    let m = only_member(&body_of(&mut sim, c, "members", 1));
    assert_eq!(m.get("Name").str(), "web-1");
    assert_eq!(m.get("Addr").bin(), [10, 1, 2, 3]);
    assert_eq!(m.get("Port").u64(), 7946);
    assert_eq!(
        tags_of(&m),
        pairs(&[
            ("build", VERSION),
            ("dc", "east"),
            ("rack", "r7"),
            ("role", "node"),
            ("vsn", "2"),
        ])
    );
}

#[test]
fn members_shows_an_ipv6_address_as_16_bytes_of_bin() {
    let mut sim = sim_with(|c| c.lan_addr = "[::1]:8301".parse().unwrap());
    let c = handshaken(&mut sim);
    let m = only_member(&body_of(&mut sim, c, "members", 1));
    let mut want = vec![0u8; 16];
    want[15] = 1;
    assert_eq!(m.get("Addr"), &V::B(want));
}

#[test]
fn members_lan_answers_exactly_as_members() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let members = call(&mut sim, c, &req("members", 7));
    let lan = call(&mut sim, c, &req("members-lan", 7));
    assert_bytes(&lan, &members);
}

#[test]
fn members_wan_on_a_client_is_an_empty_list() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let got = call(&mut sim, c, &req("members-wan", 3));
    let mut want = reply(3, "");
    want.extend(hex(NO_MEMBERS));
    assert_bytes(&got, &want);
}

#[test]
fn members_wan_on_a_server_lists_this_node_at_its_wan_address() {
    let mut sim = sim_with(|c| {
        c.server = true;
        c.wan_addr = SocketAddr::from(([192, 0, 2, 9], 8302));
    });
    let c = handshaken(&mut sim);
    let m = only_member(&body_of(&mut sim, c, "members-wan", 1));
    assert_eq!(m.keys(), MEMBER_KEYS);
    assert_eq!(m.get("Addr").bin(), [192, 0, 2, 9]);
    assert_eq!(m.get("Port").u64(), 8302);
    assert!(tags_of(&m).contains(&("role".into(), "consul".into())));
    let lan = only_member(&body_of(&mut sim, c, "members-lan", 2));
    assert!(tags_of(&lan).contains(&("role".into(), "consul".into())));
}

// ----- members-filtered (§3) -----------------------------------------------------------

fn filtered(seq: u64, name: &str, status: &str, tags: &[(&str, &str)]) -> Vec<u8> {
    let tags = V::M(
        tags.iter()
            .map(|(k, v)| (V::from(*k), V::from(*v)))
            .collect(),
    );
    req_with(
        "members-filtered",
        seq,
        &map(&[
            ("Name", name.into()),
            ("Status", status.into()),
            ("Tags", tags),
        ]),
    )
}

#[test]
fn members_filtered_with_empty_filters_lists_everyone() {
    // What `serf members` sends with no flags.
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let all = body_of(&mut sim, c, "members", 5);
    let got = body_of_request(&mut sim, c, &filtered(5, "", "", &[]), 5);
    assert_eq!(got, all);
}

/// A `members-filtered` case: Name, Status, Tags, and whether this node matches.
type FilterCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], bool);

#[test]
fn members_filtered_regexes_are_anchored_and_case_sensitive() {
    let cases: [FilterCase<'_>; 14] = [
        ("tandem", "", &[], true),
        ("tand", "", &[], false),
        ("andem", "", &[], false),
        ("tand.*", "", &[], true),
        ("TANDEM", "", &[], false),
        ("", "alive", &[], true),
        ("", "ali", &[], false),
        ("", "left|alive", &[], true),
        ("", "", &[("role", "node")], true),
        ("", "", &[("role", "no")], false),
        ("", "", &[("role", "node"), ("dc", "dc[0-9]")], true),
        ("", "", &[("role", "node"), ("dc", "east")], false),
        // A tag the member lacks is matched against "".
        ("", "", &[("missing", "")], true),
        ("", "", &[("missing", ".+")], false),
    ];
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let all = body_of(&mut sim, c, "members", 5);
    for (name, status, tags, matches) in cases {
        let got = call(&mut sim, c, &filtered(5, name, status, tags));
        let mut want = reply(5, "");
        if matches {
            want.extend(support::enc(&all));
        } else {
            want.extend(hex(NO_MEMBERS));
        }
        assert!(
            got == want,
            "Name {name:?} Status {status:?} Tags {tags:?}: got {}",
            to_hex(&got)
        );
    }
}

#[test]
fn members_filtered_with_an_invalid_regex_closes_without_a_reply() {
    for (name, request) in [
        ("Name", filtered(5, "(", "", &[])),
        ("Status", filtered(5, "", "[a-", &[])),
        ("Tags", filtered(5, "", "", &[("role", "(node")])),
    ] {
        let mut sim = Sim::new();
        let c = handshaken(&mut sim);
        sim.send(c, &request);
        let got = sim.received(c);
        assert!(got.is_empty(), "{name}: replied {}", to_hex(&got));
        assert!(sim.is_closed(c), "{name}: not closed");
    }
}

// ----- stats (§5.6) --------------------------------------------------------------------

/// The sections of a `stats` reply; every leaf must be a string.
#[track_caller]
fn stats_sections(body: &V) -> Vec<String> {
    let mut names = Vec::new();
    for (section, entries) in body.map() {
        let section = section.str();
        for (k, v) in entries.map() {
            assert!(
                matches!((k, v), (V::S(_), V::S(_))),
                "{section}.{k:?} = {v:?}: stats leaves are strings"
            );
        }
        names.push(section.to_string());
    }
    names
}

#[test]
fn stats_is_a_map_of_string_maps_with_the_agent_build_runtime_and_lan_sections() {
    let mut sim = sim_with(|c| c.node_name = "n1".into());
    let c = handshaken(&mut sim);
    let body = body_of(&mut sim, c, "stats", 2);
    let sections = stats_sections(&body);
    for want in ["agent", "build", "runtime", "serf_lan"] {
        assert!(sections.iter().any(|s| s == want), "{want} in {sections:?}");
    }
    assert!(!sections.iter().any(|s| s == "serf_wan"), "{sections:?}");
    assert_eq!(body.get("agent").get("name").str(), "n1");
    assert_eq!(body.get("build").get("version").str(), VERSION);
    assert_eq!(body.get("serf_lan").get("members").str(), "1");
}

#[test]
fn stats_on_a_server_adds_serf_wan() {
    let mut sim = sim_with(|c| c.server = true);
    let c = handshaken(&mut sim);
    let body = body_of(&mut sim, c, "stats", 2);
    let sections = stats_sections(&body);
    assert!(sections.iter().any(|s| s == "serf_wan"), "{sections:?}");
    assert_eq!(body.get("serf_wan").get("members").str(), "1");
}

// ----- reload and leave (§2, §5.10) ----------------------------------------------------

#[test]
fn reload_answers_once_the_runtime_has_reloaded_with_the_files_error() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    // The request behind it waits too, as behind a join.
    let mut both = req("reload", 4);
    both.extend(req("stats", 5));
    assert!(
        call(&mut sim, c, &both).is_empty(),
        "no answer before the reload"
    );
    assert_eq!(sim.take_effects(), [Effect::Reload]);
    // A second client asks meanwhile: it waits for the same reload, asking no second one.
    let d = handshaken(&mut sim);
    assert!(call(&mut sim, d, &req("reload", 9)).is_empty());
    assert_eq!(sim.take_effects(), []);
    let error = "cannot parse /etc/tandem.json: expected value at line 1 column 3";
    sim.reload_finished(Err(error.into()));
    let got = sim.received(c);
    let first = reply(4, error);
    assert_bytes(&got[..first.len()], &first);
    assert_eq!(
        values(&got[first.len()..])[0],
        map(&[("Error", "".into()), ("Seq", 5.into())])
    );
    assert_bytes(&sim.received(d), &reply(9, error));
    let failed = format!("[ERR] agent: reload failed, keeping the running configuration: {error}");
    assert!(
        sim.logs.iter().any(|r| r.line.ends_with(&failed)),
        "{:?}",
        sim.logs
    );
    assert_eq!(sim.agent.stats().reloads, 0);
    // The next reload asks again; a good file is applied and answered without an error.
    assert!(call(&mut sim, c, &req("reload", 6)).is_empty());
    assert_eq!(sim.take_effects(), [Effect::Reload]);
    sim.reload_finished(Ok(tandem_core::Config::default()));
    assert_bytes(&sim.received(c), &reply(6, ""));
    assert_eq!(sim.agent.stats().reloads, 1);
    assert!(!sim.is_closed(c));
}

#[test]
fn the_reload_command_ends_with_the_reloads_outcome() {
    let mut sim = Sim::new();
    let exec = sim.connect();
    sim.post(exec, r#"{"action":"exec","command":"reload"}"#);
    assert!(sim.responses(exec).is_empty(), "waits for the runtime");
    assert_eq!(sim.take_effects(), [Effect::Reload]);
    sim.reload_finished(Err("cannot read /x.json: No such file or directory".into()));
    let v = sim.responses(exec)[0].json();
    assert_eq!(v["state"], "SUCCEEDED", "{v}");
    let results = &v["body"]["results"];
    assert_eq!(results.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(results[0]["type"], "status");
    assert_eq!(results[0]["statusCode"], 1);
    assert_eq!(
        results[0]["message"],
        "cannot read /x.json: No such file or directory"
    );
    // A SIGHUP-style reload the runtime does on its own answers a waiting command too.
    sim.post(exec, r#"{"action":"exec","command":"reload"}"#);
    sim.reload_finished(Ok(tandem_core::Config::default()));
    let v = sim.responses(exec)[0].json();
    let results = &v["body"]["results"];
    assert_eq!(results[0]["message"], "Configuration reloaded", "{v}");
    assert_eq!(results[1]["statusCode"], 0);
    let v = sim.api(r#"{"action":"exec","command":"reload now"}"#);
    assert_eq!(v["body"]["results"][0]["statusCode"], -10, "{v}");
}

#[test]
fn leave_answers_once_the_leave_has_spread_then_asks_the_runtime_to_shut_down() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    // Drive the agent directly to see the order of its outputs.
    let now = sim.now;
    let request = req("leave", 1);
    assert_eq!(sim.agent.handle_stream(c, &request, now), request.len());
    let outputs: Vec<Output> = std::iter::from_fn(|| sim.agent.poll_output()).collect();
    // Serf answers once its leave broadcast went out (`serf leave` took 2.3 s): nothing yet.
    assert!(sim.agent.tx_pending(c).is_empty(), "{outputs:?}");
    assert!(
        !outputs.contains(&Output::Effect(Effect::Shutdown)),
        "shut down before the leave propagated: {outputs:?}"
    );
    let delay = sim.agent.cluster().config().leave_propagate_delay;
    let now = sim.now + delay;
    sim.agent.handle_timeout(now);
    let outputs: Vec<Output> = std::iter::from_fn(|| sim.agent.poll_output()).collect();
    // §5.10: {"Error":"","Seq":1}, then the shutdown.
    assert_bytes(sim.agent.tx_pending(c), &hex("82a54572726f72a0a353657101"));
    let reply = outputs.iter().position(|o| *o == Output::Transmit(c));
    let shutdown = outputs
        .iter()
        .position(|o| *o == Output::Effect(Effect::Shutdown));
    assert!(
        matches!((reply, shutdown), (Some(r), Some(s)) if r < s),
        "{outputs:?}"
    );
    // A second leave on an agent that has left is answered at once.
    let again = req("leave", 2);
    assert_eq!(sim.agent.handle_stream(c, &again, now), again.len());
    assert!(
        sim.agent
            .tx_pending(c)
            .ends_with(&hex("82a54572726f72a0a353657102"))
    );
}

// ----- tags (§3) -----------------------------------------------------------------------

fn tags_request(seq: u64, delete: &[&str], set: &[(&str, &str)]) -> Vec<u8> {
    let set = V::M(
        set.iter()
            .map(|(k, v)| (V::from(*k), V::from(*v)))
            .collect(),
    );
    req_with(
        "tags",
        seq,
        &map(&[("DeleteTags", strs(delete)), ("Tags", set)]),
    )
}

#[test]
fn tags_deletes_then_merges_and_members_shows_the_change() {
    let mut sim = sim_with(|c| {
        c.tags.insert("rack".into(), "r1".into());
        c.tags.insert("zone".into(), "a".into());
    });
    let c = handshaken(&mut sim);
    let got = call(
        &mut sim,
        c,
        &tags_request(2, &["rack"], &[("zone", "b"), ("tier", "web")]),
    );
    assert_bytes(&got, &reply(2, ""));
    // Seen from another connection too.
    let other = handshaken(&mut sim);
    let m = only_member(&body_of(&mut sim, other, "members", 3));
    assert_eq!(
        tags_of(&m),
        pairs(&[
            ("build", VERSION),
            ("dc", "dc1"),
            ("role", "node"),
            ("tier", "web"),
            ("vsn", "2"),
            ("zone", "b"),
        ])
    );
}

#[test]
fn tags_set_in_the_same_request_as_its_delete_is_kept() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    assert_bytes(
        &call(&mut sim, c, &tags_request(2, &[], &[("tier", "db")])),
        &reply(2, ""),
    );
    assert_bytes(
        &call(
            &mut sim,
            c,
            &tags_request(3, &["tier"], &[("tier", "cache")]),
        ),
        &reply(3, ""),
    );
    let m = only_member(&body_of(&mut sim, c, "members", 4));
    assert!(tags_of(&m).contains(&("tier".into(), "cache".into())));
    assert_bytes(
        &call(&mut sim, c, &tags_request(5, &["tier"], &[])),
        &reply(5, ""),
    );
    let m = only_member(&body_of(&mut sim, c, "members", 6));
    assert!(!tags_of(&m).iter().any(|(k, _)| k == "tier"), "{m:?}");
}

// ----- force-leave (§5.5) and join (§2, §5.4) ------------------------------------------

#[test]
fn force_leave_of_an_unknown_node_succeeds() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let got = call(
        &mut sim,
        c,
        &hex("82a7436f6d6d616e64ab666f7263652d6c65617665a353657101 \
             82a44e6f6465a66e6f73756368a55072756e65c2"),
    );
    assert_bytes(&got, &hex("82a54572726f72a0a353657101"));
}

fn join(seq: u64, existing: &[&str], wan: bool) -> Vec<u8> {
    req_with(
        "join",
        seq,
        &map(&[("Existing", strs(existing)), ("WAN", wan.into())]),
    )
}

#[test]
fn join_wan_on_a_client_is_refused_and_still_sends_num() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let got = call(&mut sim, c, &join(2, &["10.0.0.1:8302"], true));
    let mut want = reply(2, "Must be a server to join WAN cluster");
    want.extend(hex("81a34e756d00"));
    assert_bytes(&got, &want);
    // 36 bytes of error: str8, as Go writes it.
    assert_eq!(&got[7..9], [0xd9, 36]);
    assert!(!sim.is_closed(c));
}

#[test]
fn join_of_an_empty_list_is_num_zero_without_error() {
    for wan in [false, true] {
        let mut sim = sim_with(|c| c.server = true);
        let c = handshaken(&mut sim);
        let got = call(&mut sim, c, &join(2, &[], wan));
        let mut want = reply(2, "");
        want.extend(hex("81a34e756d00"));
        assert_bytes(&got, &want);
    }
}

#[test]
fn join_failure_is_a_multierror_and_still_sends_num() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    sim.send(c, &join(3, &["127.0.0.1:1"], false));
    // Once gossip is wired in, the failure may take a dial timeout of virtual time.
    let mut got = sim.received(c);
    while got.is_empty() {
        let deadline = sim
            .agent
            .poll_timeout()
            .expect("a join in progress has a timer");
        assert!(
            deadline <= sim.now + Duration::from_secs(60),
            "join never failed"
        );
        let step = deadline.saturating_duration_since(sim.now);
        sim.advance(step);
        got = sim.received(c);
    }
    assert_go_encoded(&got);
    let vals = values(&got);
    assert_eq!(vals.len(), 2);
    let error = vals[0].get("Error").str();
    assert!(
        error.starts_with("1 error occurred:\n\t* Failed to join 127.0.0.1")
            && error.ends_with("\n\n"),
        "{error:?}"
    );
    assert_eq!(vals[0].get("Seq").u64(), 3);
    assert_eq!(vals[1], map(&[("Num", 0u64.into())]));
    assert!(!sim.is_closed(c));
}

// ----- counters ------------------------------------------------------------------------

#[test]
fn rpc_counters_count_requests_run_replies_and_decode_errors() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    let _ = call(&mut sim, c, &req("members", 1));
    let _ = call(
        &mut sim,
        c,
        &req_with("monitor", 2, &map(&[("LogLevel", "info".into())])),
    );
    let _ = support::log(&mut sim, tandem_core::Level::Info, "agent: a record");
    let _ = call(
        &mut sim,
        c,
        &req_with("stop", 3, &map(&[("Stop", 2u64.into())])),
    );
    // Refused before it runs: a reply, not a request.
    let early = support::connect(&mut sim);
    let _ = call(&mut sim, early, &req("members", 1));
    let bad = support::connect(&mut sim);
    sim.send(bad, &hex("c1"));
    let stats = sim.agent.stats();
    assert_eq!(
        (
            stats.rpc_requests,
            stats.rpc_replies,
            stats.rpc_decode_errors,
            stats.rpc_records_dropped
        ),
        (4, 5, 1, 0),
        "(requests, replies, decode errors, records dropped)"
    );
}

// ----- auth (§3, §5.9) -----------------------------------------------------------------

fn auth(seq: u64, key: &str) -> Vec<u8> {
    req_with("auth", seq, &map(&[("AuthKey", key.into())]))
}

fn with_auth() -> Sim {
    sim_with(|c| c.rpc_auth = Some("s3cret".into()))
}

/// `{"Error":"Authentication required","Seq":seq}`, no body.
fn auth_required(seq: u64) -> Vec<u8> {
    reply(seq, "Authentication required")
}

#[test]
fn members_before_auth_is_refused_and_the_connection_stays_open() {
    let mut sim = with_auth();
    let c = handshaken(&mut sim);
    let got = call(&mut sim, c, &req("members", 1));
    assert_bytes(
        &got,
        &hex("82a54572726f72b7 41757468656e7469636174696f6e207265717569726564 a353657101"),
    );
    assert!(!sim.is_closed(c));
}

#[test]
fn a_command_with_a_body_before_auth_gets_exactly_one_refusal() {
    // Unlike Serf (§5.9, two refusals), the refused command's body is read and dropped.
    let mut sim = with_auth();
    let c = handshaken(&mut sim);
    let got = call(&mut sim, c, &join(3, &["127.0.0.1:7947"], false));
    assert_bytes(&got, &auth_required(3));
    assert!(!sim.is_closed(c));
    assert_bytes(&call(&mut sim, c, &auth(4, "s3cret")), &reply(4, ""));
}

#[test]
fn every_command_before_auth_is_refused_and_runs_nothing() {
    let requests: [(&str, Vec<u8>); 14] = [
        ("members", req("members", 1)),
        ("members-lan", req("members-lan", 1)),
        ("members-wan", req("members-wan", 1)),
        ("stats", req("stats", 1)),
        ("reload", req("reload", 1)),
        ("leave", req("leave", 1)),
        ("join", join(1, &[], false)),
        (
            "force-leave",
            req_with("force-leave", 1, &map(&[("Node", "x".into())])),
        ),
        ("members-filtered", filtered(1, "", "", &[])),
        (
            "monitor",
            req_with("monitor", 1, &map(&[("LogLevel", "info".into())])),
        ),
        ("stop", req_with("stop", 1, &map(&[("Stop", 1u64.into())]))),
        (
            "stream",
            req_with("stream", 1, &map(&[("Type", "*".into())])),
        ),
        ("tags", tags_request(1, &[], &[("k", "v")])),
        (
            "event",
            req_with(
                "event",
                1,
                &map(&[("Name", "e".into()), ("Payload", V::B(vec![]))]),
            ),
        ),
    ];
    for (name, request) in requests {
        let mut sim = with_auth();
        let c = handshaken(&mut sim);
        let got = call(&mut sim, c, &request);
        assert!(got == auth_required(1), "{name}: got {}", to_hex(&got));
        assert!(!sim.is_closed(c), "{name}");
        assert!(sim.effects.is_empty(), "{name} ran: {:?}", sim.effects);
        // Nothing was left behind: the next request is read as a header.
        assert_bytes(&call(&mut sim, c, &auth(2, "s3cret")), &reply(2, ""));
        // And nothing was registered: no monitor or stream records, tags unchanged.
        support::log(&mut sim, tandem_core::Level::Err, "after auth");
        let m = only_member(&body_of(&mut sim, c, "members", 3));
        assert!(!tags_of(&m).iter().any(|(k, _)| k == "k"), "{name}");
    }
}

#[test]
fn an_unknown_command_before_auth_is_refused_for_auth() {
    let mut sim = with_auth();
    let c = handshaken(&mut sim);
    let got = call(&mut sim, c, &req("bogus", 2));
    assert_bytes(&got, &auth_required(2));
    assert!(!sim.is_closed(c));
}

#[test]
fn a_wrong_key_is_refused_and_the_connection_stays_open() {
    let mut sim = with_auth();
    let c = handshaken(&mut sim);
    for (seq, key) in [
        (2, "nope"),
        (3, "s3cre"),
        (4, "s3crets"),
        (5, ""),
        (6, "S3CRET"),
    ] {
        let got = call(&mut sim, c, &auth(seq, key));
        assert_bytes(&got, &reply(seq, "Invalid authentication token"));
        assert!(!sim.is_closed(c));
    }
    assert_bytes(&call(&mut sim, c, &req("members", 7)), &auth_required(7));
}

#[test]
fn the_right_key_opens_the_connection_and_a_later_wrong_key_does_not_revoke_it() {
    let mut sim = with_auth();
    let c = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, c, &auth(2, "s3cret")), &reply(2, ""));
    only_member(&body_of(&mut sim, c, "members", 3));
    assert_bytes(
        &call(&mut sim, c, &auth(4, "nope")),
        &reply(4, "Invalid authentication token"),
    );
    only_member(&body_of(&mut sim, c, "members", 5));
    assert_bytes(&call(&mut sim, c, &auth(6, "s3cret")), &reply(6, ""));
}

#[test]
fn auth_is_per_connection() {
    let mut sim = with_auth();
    let a = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, a, &auth(1, "s3cret")), &reply(1, ""));
    let b = handshaken(&mut sim);
    assert_bytes(&call(&mut sim, b, &req("members", 1)), &auth_required(1));
}

#[test]
fn without_rpc_auth_only_an_empty_key_is_accepted() {
    let mut sim = Sim::new();
    let c = handshaken(&mut sim);
    assert_bytes(
        &call(&mut sim, c, &auth(1, "s3cret")),
        &reply(1, "Invalid authentication token"),
    );
    assert!(!sim.is_closed(c));
    assert_bytes(&call(&mut sim, c, &auth(2, "")), &reply(2, ""));
    // No gate without a key.
    only_member(&body_of(&mut sim, c, "members", 3));
}
