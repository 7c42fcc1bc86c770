//! `-snapshot` and `-rejoin` on the core's virtual clock: the snapshot file Serf's way
//! (appends through `Effect::Persist`, compaction as a replace), what a restart restores
//! (the re-join through the listed members, the event and query clocks), a graceful leave
//! that keeps a restarted node out unless `rejoin_after_leave`, and hostile files read in
//! bounded memory with every bad line skipped and counted.

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;

use std::net::SocketAddr;
use std::time::Duration;

use rpc_support::{V, handshake, map, req_with};
use tandem_core::cluster::MemberStatus;
use tandem_core::{
    Agent, Config, Effect, FileWrite, Instant, Listener, Output, Pool, SNAPSHOT_LINE_LIMIT,
    SNAPSHOT_MIN_COMPACT_SIZE, Snapshot, SnapshotReader, StateFile, StateFiles,
};
use tandem_tests::netsim::{Net, NetConfig, START, SimNode, lan_addr, node_name};
use tandem_tests::netsim_agent::agent_config;

const TICK: Duration = Duration::from_millis(100);

/// An agent whose snapshot writes land in an in-memory file, as a runtime performs them.
struct Node {
    agent: Agent,
    file: Vec<u8>,
    replaces: usize,
    /// A write fails while this is set.
    failing: bool,
}

impl SimNode for Node {
    type Event = String;
    fn handle_datagram(&mut self, pool: Pool, from: SocketAddr, data: &[u8], now: Instant) {
        self.agent.handle_datagram(pool, from, data, now);
    }
    fn poll_datagram(&mut self) -> Option<(Pool, SocketAddr, Vec<u8>)> {
        self.agent.poll_datagram()
    }
    fn poll_event(&mut self) -> Option<String> {
        loop {
            match self.agent.poll_output()? {
                Output::Effect(Effect::Persist { file, write, bytes }) => {
                    assert_eq!(file, StateFile::Snapshot);
                    if self.failing {
                        return Some(format!("persist failed: {write:?}"));
                    }
                    match write {
                        FileWrite::Append => self.file.extend_from_slice(&bytes),
                        FileWrite::Replace => {
                            self.file = bytes;
                            self.replaces += 1;
                        }
                    }
                }
                Output::Log(record) => return Some(record.line.to_string()),
                _ => {}
            }
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.agent.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.agent.handle_timeout(now);
    }
}

fn config(i: usize, snapshot: bool, rejoin_after_leave: bool) -> Config {
    Config {
        state_files: StateFiles {
            snapshot,
            ..StateFiles::default()
        },
        rejoin_after_leave,
        ..agent_config(i)
    }
}

fn node(cfg: Config, seed: u64, now: Instant) -> Node {
    Node {
        agent: Agent::new(cfg, seed, now),
        file: Vec::new(),
        replaces: 0,
        failing: false,
    }
}

/// `n` agents, those in `with_snapshot` keeping a snapshot.
fn net(n: usize, with_snapshot: &[usize]) -> Net<Node> {
    let mut sim = Net::new(NetConfig::default(), START);
    sim.record_events = true;
    for i in 0..n {
        let cfg = config(i, with_snapshot.contains(&i), false);
        let nd = node(cfg, 40 + i as u64, sim.now);
        sim.add(nd, lan_addr(i), None);
    }
    sim
}

fn text(sim: &Net<Node>, i: usize) -> String {
    String::from_utf8(sim.node(i).file.clone()).unwrap()
}

fn logged(sim: &Net<Node>, i: usize, needle: &str) -> usize {
    sim.events(i).iter().filter(|l| l.contains(needle)).count()
}

fn alive_everywhere(sim: &Net<Node>, n: usize) -> bool {
    (0..n).all(|i| {
        !sim.is_alive(i)
            || sim
                .node(i)
                .agent
                .cluster()
                .members(Pool::Lan)
                .iter()
                .filter(|m| m.status == MemberStatus::Alive)
                .count()
                == n
    })
}

fn join(sim: &mut Net<Node>, i: usize, to: usize) {
    let target = lan_addr(to).to_string();
    sim.with(i, |n, now| n.agent.join(&[target.as_str()], false, now));
}

/// One RPC command on node `i`, after a handshake.
fn rpc(sim: &mut Net<Node>, i: usize, cmd: &str, body: &V) {
    let mut bytes = handshake(0);
    bytes.extend(req_with(cmd, 1, body));
    sim.with(i, |n, now| {
        let c = n.agent.accept(Listener::Rpc, None, now).unwrap();
        assert_eq!(n.agent.handle_stream(c, &bytes, now), bytes.len());
    });
}

fn user_event(sim: &mut Net<Node>, i: usize, name: &str) {
    let body = map(&[
        ("Name", V::from(name)),
        ("Payload", V::B(b"x".to_vec())),
        ("Coalesce", V::Bool(false)),
    ]);
    rpc(sim, i, "event", &body);
}

/// Three agents joined, agent 2 keeping a snapshot.
fn three_joined() -> Net<Node> {
    let mut sim = net(3, &[2]);
    join(&mut sim, 1, 0);
    join(&mut sim, 2, 0);
    sim.run_until_cond(Duration::from_secs(30), TICK, |s| alive_everywhere(s, 3))
        .expect("the three agents converge");
    sim
}

#[test]
fn the_snapshot_records_members_and_clocks_in_serfs_format() {
    let mut sim = three_joined();
    user_event(&mut sim, 0, "deploy");
    sim.run_for(Duration::from_secs(5));
    let file = text(&sim, 2);
    let alive = |i: usize| format!("alive: {} {}\n", node_name(i), lan_addr(i));
    assert!(file.contains(&alive(0)), "{file}");
    assert!(file.contains(&alive(1)), "{file}");
    assert!(!file.contains(&node_name(2)), "not itself: {file}");
    assert!(file.contains("event-clock: 1\n"), "{file}");
    // Agent 1 fails: not-alive.
    sim.kill(1);
    sim.run_until_cond(Duration::from_secs(60), TICK, |s| {
        text(s, 2).contains(&format!("not-alive: {}\n", node_name(1)))
    })
    .expect("a failed member is recorded not-alive");
    // Read back, the file says what the agent saw.
    let snap = SnapshotReader::read_all(sim.node(2).file.as_slice(), false, 100);
    assert_eq!(snap.bad_lines, 0);
    assert_eq!(
        snap.alive.into_iter().collect::<Vec<_>>(),
        [(node_name(0), lan_addr(0))]
    );
    assert_eq!(snap.event_clock, 1);
    assert_eq!(sim.node(2).replaces, 0, "small files are only appended to");
}

#[test]
fn a_killed_agent_restarted_with_its_snapshot_rejoins_without_join_and_replays_no_old_event() {
    let mut sim = three_joined();
    user_event(&mut sim, 0, "before");
    sim.run_for(Duration::from_secs(3));
    assert_eq!(logged(&sim, 2, "Received event: user-event: before"), 1);
    sim.kill(2);
    sim.run_until_cond(Duration::from_secs(60), TICK, |s| {
        s.node(0)
            .agent
            .cluster()
            .member_status(Pool::Lan, lan_addr(2))
            == Some(MemberStatus::Failed)
    })
    .expect("agent 2 shows failed");
    // While it is down, another event: Serf's re-join delivers it (it is newer than the
    // snapshot's clock), but not the one before.
    user_event(&mut sim, 1, "while-down");
    sim.run_for(Duration::from_secs(3));
    // The restart: a new agent, the same snapshot file, no join.
    let file = sim.node(2).file.clone();
    let snap = SnapshotReader::read_all(&file, false, 100);
    let mut fresh = node(config(2, true, false), 99, sim.now);
    fresh.file = file;
    sim.restart(2, fresh);
    sim.with(2, |n, now| n.agent.restore_snapshot(snap, now));
    assert_eq!(
        logged(
            &sim,
            2,
            "[INFO] serf: Attempting re-join to previously known node: "
        ),
        1
    );
    sim.run_until_cond(Duration::from_secs(60), TICK, |s| alive_everywhere(s, 3))
        .expect("the restarted agent finds its cluster again");
    assert_eq!(
        logged(&sim, 2, "[INFO] serf: Re-joined to previously known node: "),
        1
    );
    // The event clock came back from the file: the old event is not seen again, and new
    // events are.
    assert!(sim.node(2).agent.cluster().event_ltime() >= 3);
    user_event(&mut sim, 1, "after");
    sim.run_for(Duration::from_secs(5));
    assert_eq!(logged(&sim, 2, "Received event: user-event: before"), 1);
    assert_eq!(logged(&sim, 2, "Received event: user-event: while-down"), 1);
    assert_eq!(logged(&sim, 2, "Received event: user-event: after"), 1);
}

#[test]
fn the_rejoin_tries_the_listed_members_one_at_a_time_until_one_answers() {
    let mut sim = net(2, &[1]);
    // Two dead entries, one live one and this node itself.
    let snap_text = format!(
        "alive: gone-1 10.99.0.1:8301\nalive: gone-2 10.99.0.2:8301\nalive: {} {}\n\
         alive: {} {}\nclock: 3\n",
        node_name(0),
        lan_addr(0),
        node_name(1),
        lan_addr(1),
    );
    let snap = SnapshotReader::read_all(snap_text.as_bytes(), false, 100);
    sim.with(1, |n, now| n.agent.restore_snapshot(snap, now));
    sim.run_until_cond(Duration::from_secs(120), TICK, |s| alive_everywhere(s, 2))
        .expect("the live member is found");
    let attempts = logged(
        &sim,
        1,
        "serf: Attempting re-join to previously known node: ",
    );
    assert!((1..=3).contains(&attempts), "never itself: {attempts}");
    assert_eq!(
        logged(
            &sim,
            1,
            &format!(
                "[INFO] serf: Re-joined to previously known node: {}: {}",
                node_name(0),
                lan_addr(0)
            )
        ),
        1
    );
    // All dead: Serf's warning, and nothing more.
    let mut sim = net(1, &[0]);
    let snap = SnapshotReader::read_all(b"alive: gone 10.99.0.1:8301\n", false, 100);
    sim.with(0, |n, now| n.agent.restore_snapshot(snap, now));
    sim.run_for(Duration::from_secs(120));
    assert_eq!(
        logged(
            &sim,
            0,
            "[WARN] serf: Failed to re-join any previously known node"
        ),
        1
    );
}

#[test]
fn an_agent_that_left_gracefully_does_not_rejoin_unless_rejoin_after_leave() {
    let mut sim = three_joined();
    sim.with(2, |n, now| n.agent.leave(now));
    sim.run_for(Duration::from_secs(10));
    let file = text(&sim, 2);
    assert!(file.ends_with("leave\n"), "{file}");
    for (rejoin, attempts) in [(false, 0), (true, 1)] {
        let snap = SnapshotReader::read_all(file.as_bytes(), rejoin, 100);
        assert_eq!(snap.left, !rejoin);
        assert_eq!(snap.leave_ignored, rejoin);
        let mut fresh = node(config(2, true, rejoin), 98, sim.now);
        fresh.file = file.clone().into_bytes();
        sim.restart(2, fresh);
        sim.with(2, |n, now| n.agent.restore_snapshot(snap, now));
        sim.run_for(Duration::from_secs(20));
        assert_eq!(
            logged(&sim, 2, "serf: Attempting re-join to previously known node"),
            attempts,
            "rejoin_after_leave {rejoin}"
        );
        assert_eq!(
            logged(&sim, 2, "[INFO] serf: Ignoring previous leave in snapshot"),
            usize::from(rejoin)
        );
        let members = sim.node(2).agent.cluster().members(Pool::Lan).len();
        assert_eq!(members, if rejoin { 3 } else { 1 }, "rejoin {rejoin}");
        sim.kill(2);
    }
}

#[test]
fn restored_clocks_go_past_the_snapshots_and_bad_lines_are_logged_and_compacted_away() {
    let mut sim = net(1, &[0]);
    let file = b"# written by hand\nevent-clock: 41\nquery-clock: 7\ncoordinate: {}\n\
                 nonsense\nalive: x 1.2.3.4\nclock: 12\n"
        .to_vec();
    let snap = SnapshotReader::read_all(&file, false, 100);
    assert_eq!(snap.bad_lines, 2);
    sim.with(0, |n, _| n.file = file);
    sim.with(0, |n, now| n.agent.restore_snapshot(snap, now));
    let c = sim.node(0).agent.cluster();
    assert_eq!(c.event_ltime(), 42);
    assert_eq!(c.query_ltime(), 8);
    assert_eq!(
        logged(&sim, 0, "[WARN] serf: Unrecognized snapshot line: nonsense"),
        1
    );
    assert_eq!(
        logged(
            &sim,
            0,
            "[WARN] serf: Unrecognized snapshot line: alive: x 1.2.3.4"
        ),
        1
    );
    assert_eq!(
        logged(&sim, 0, "[WARN] serf: skipped 2 unreadable snapshot lines"),
        1
    );
    // The garbage is gone from the file, the clocks kept.
    assert_eq!(
        text(&sim, 0),
        "clock: 12\nevent-clock: 41\nquery-clock: 7\n"
    );
}

#[test]
fn a_snapshot_grown_beyond_serfs_bound_is_compacted_to_its_live_members_and_clocks() {
    let mut sim = three_joined();
    // 128 KiB of churn: one member coming and going.
    let mut churn = String::new();
    while churn.len() as u64 <= SNAPSHOT_MIN_COMPACT_SIZE {
        churn.push_str("alive: flapper 10.0.0.9:8301\nnot-alive: flapper\n");
    }
    let mut file = sim.node(2).file.clone();
    file.extend_from_slice(churn.as_bytes());
    let snap = SnapshotReader::read_all(&file, false, 100);
    assert_eq!(snap.bytes, file.len() as u64);
    let mut fresh = node(config(2, true, false), 97, sim.now);
    fresh.file = file;
    sim.kill(2);
    sim.restart(2, fresh);
    sim.with(2, |n, now| n.agent.restore_snapshot(snap, now));
    assert_eq!(sim.node(2).replaces, 1, "compacted at start");
    let compacted = text(&sim, 2);
    assert_eq!(
        compacted,
        format!(
            "alive: {} {}\nalive: {} {}\nclock: 0\nevent-clock: 0\nquery-clock: 0\n",
            node_name(0),
            lan_addr(0),
            node_name(1),
            lan_addr(1)
        )
    );
}

#[test]
fn a_failed_write_is_logged_counted_and_the_next_write_rewrites_the_whole_file() {
    let mut sim = three_joined();
    sim.with(2, |n, _| n.failing = true);
    user_event(&mut sim, 0, "lost");
    sim.run_for(Duration::from_secs(3));
    assert_eq!(logged(&sim, 2, "persist failed: Append"), 1);
    sim.with(2, |n, now| {
        n.agent
            .persisted(StateFile::Snapshot, Err("disk full"), now);
    });
    assert_eq!(
        logged(
            &sim,
            2,
            "[ERR] agent: failed to write the snapshot: disk full"
        ),
        1
    );
    assert_eq!(sim.node(2).agent.persist_failures(), 1);
    sim.with(2, |n, _| n.failing = false);
    let replaces = sim.node(2).replaces;
    user_event(&mut sim, 0, "next");
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.node(2).replaces, replaces + 1);
    let file = text(&sim, 2);
    assert!(file.contains("event-clock: 2\n"), "{file}");
    assert!(
        file.contains(&format!("alive: {} ", node_name(0))),
        "{file}"
    );
}

#[test]
fn without_a_snapshot_nothing_is_written_and_a_restore_does_nothing() {
    let mut sim = net(2, &[]);
    join(&mut sim, 1, 0);
    sim.run_until_cond(Duration::from_secs(30), TICK, |s| alive_everywhere(s, 2))
        .unwrap();
    assert!(sim.node(0).file.is_empty() && sim.node(1).file.is_empty());
    let snap = SnapshotReader::read_all(b"event-clock: 50\n", false, 10);
    sim.with(0, |n, now| n.agent.restore_snapshot(snap, now));
    assert!(sim.node(0).agent.cluster().event_ltime() < 50);
}

// ----- the reader: Serf's format and hostile files -----------------------------------

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn the_reader_follows_serfs_replay() {
    let file = "alive: a 10.0.0.1:8301\nalive: name with spaces [::1]:7946\n\
                alive: b 10.0.0.2:8301\nnot-alive: b\nnot-alive: never-seen\n\
                clock: 5\nevent-clock: 9\nquery-clock: 3\n# comment\ncoordinate: {\"x\":1}\n\
                alive: a 10.0.0.3:8301\n";
    let snap = SnapshotReader::read_all(file.as_bytes(), false, 100);
    assert_eq!(
        snap.alive.clone().into_iter().collect::<Vec<_>>(),
        [
            ("a".to_string(), addr("10.0.0.3:8301")),
            ("name with spaces".to_string(), addr("[::1]:7946")),
        ]
    );
    assert_eq!((snap.clock, snap.event_clock, snap.query_clock), (5, 9, 3));
    assert_eq!(snap.bad_lines, 0);
    assert!(!snap.left);
    // A leave forgets all before it (members and clocks), but not what follows.
    let left = format!("{file}leave\n");
    let snap = SnapshotReader::read_all(left.as_bytes(), false, 100);
    assert!(snap.left && snap.alive.is_empty());
    assert_eq!((snap.clock, snap.event_clock, snap.query_clock), (0, 0, 0));
    let back = format!("{left}alive: c 10.0.0.4:1\n");
    let snap = SnapshotReader::read_all(back.as_bytes(), false, 100);
    assert!(!snap.left);
    assert_eq!(snap.alive.len(), 1);
    // With rejoin_after_leave it is ignored.
    let snap = SnapshotReader::read_all(left.as_bytes(), true, 100);
    assert!(snap.leave_ignored && !snap.left);
    assert_eq!(snap.alive.len(), 2);
    assert_eq!(snap.event_clock, 9);
}

#[test]
fn hostile_snapshot_lines_are_skipped_and_counted_never_a_panic() {
    let overlong = format!("alive: {} 10.0.0.1:1\n", "n".repeat(SNAPSHOT_LINE_LIMIT));
    let long_name = format!("alive: {} 10.0.0.1:1\n", "n".repeat(600));
    let cases: &[(&[u8], &str)] = &[
        (overlong.as_bytes(), "an overlong line"),
        (long_name.as_bytes(), "a name over the limit"),
        (b"alive: \xff\xfe 10.0.0.1:1\n", "not UTF-8"),
        (
            b"alive: a\x00b 10.0.0.1:1\n",
            "a control character in the name",
        ),
        (b"\x00\x01\x02\n", "binary"),
        (b"alive: a 10.0.0.1\n", "no port"),
        (b"alive: a 999.0.0.1:1\n", "no IP"),
        (b"alive: a 10.0.0.1:99999\n", "port out of range"),
        (b"alive: a host.example:8301\n", "a host name"),
        (b"alive: 10.0.0.1:1\n", "no name"),
        (b"alive:  10.0.0.1:1\n", "an empty name"),
        (b"clock: 18446744073709551616\n", "over u64"),
        (b"event-clock: 9223372036854775808\n", "over i64"),
        (b"query-clock: -1\n", "negative"),
        (b"clock: +1\n", "a sign"),
        (b"clock: \n", "empty"),
        (b"event-clock:12\n", "no space"),
        (b"leave \n", "leave with a tail"),
        (b"ALIVE: a 10.0.0.1:1\n", "upper case"),
        (b"alive: a 10.0.0.1:1", "an unterminated last line"),
    ];
    for (bytes, why) in cases {
        let snap = SnapshotReader::read_all(bytes, false, 100);
        assert_eq!(snap.bad_lines, 1, "{why}");
        assert_eq!(snap.bad_examples.len(), 1, "{why}");
        assert!(snap.alive.is_empty(), "{why}");
        assert_eq!(
            (snap.clock, snap.event_clock, snap.query_clock),
            (0, 0, 0),
            "{why}"
        );
    }
    // The largest clock accepted.
    let snap = SnapshotReader::read_all(b"event-clock: 9223372036854775807\n", false, 1);
    assert_eq!(snap.event_clock, i64::MAX as u64);
}

#[test]
fn the_reader_gives_the_same_answer_however_the_file_is_chunked() {
    let mut file = Vec::new();
    for i in 0..50 {
        file.extend_from_slice(
            format!("alive: n{i} 10.0.{}.{}:8301\n", i / 250, i % 250).as_bytes(),
        );
        if i % 7 == 0 {
            file.extend_from_slice(b"garbage \xff line\n");
            file.extend_from_slice(format!("not-alive: n{}\n", i / 2).as_bytes());
        }
        file.extend_from_slice(format!("event-clock: {i}\n").as_bytes());
    }
    file.extend_from_slice("x".repeat(3 * SNAPSHOT_LINE_LIMIT).as_bytes());
    file.extend_from_slice(b"\nquery-clock: 4\n");
    let whole = SnapshotReader::read_all(&file, false, 100);
    assert_eq!(whole.bad_lines, 8 + 1);
    for chunk in [1, 2, 3, 17, 1000] {
        let mut r = SnapshotReader::new(false, 100);
        for c in file.chunks(chunk) {
            r.feed(c);
        }
        assert_eq!(r.finish(), whole, "chunks of {chunk}");
    }
}

#[test]
fn millions_of_lines_cost_bounded_memory_and_keep_at_most_max_members() {
    let mut r = SnapshotReader::new(false, 1000);
    let mut chunk = String::new();
    let mut lines = 0u64;
    for block in 0..200 {
        chunk.clear();
        for i in 0..10_000 {
            let n = block * 10_000 + i;
            chunk.push_str(&format!(
                "alive: node-{n} 10.{}.{}.{}:8301\n",
                n >> 16 & 255,
                n >> 8 & 255,
                n & 255
            ));
            lines += 1;
        }
        r.feed(chunk.as_bytes());
    }
    let snap: Snapshot = r.finish();
    assert_eq!(lines, 2_000_000);
    assert_eq!(snap.alive.len(), 1000, "names beyond the bound are refused");
    assert_eq!(snap.bad_lines, lines - 1000);
    assert_eq!(
        snap.bad_examples.len(),
        8,
        "only the first few kept for the log"
    );
}
