//! `rtt` end to end: three agents of one runtime on 127.0.0.1 measure round trips over their
//! gossip sockets; `tandem rtt` and Debian's `serf rtt` (provisioned by
//! `tandem_tests::tools::serf`) print the same estimate in the same line, and the same
//! errors, as `serf rtt` prints against two real `serf agent`s started by the test. Every
//! case runs on both runtimes (`<case>::smol`, `<case>::mio`); `harness = false`, so that a
//! missing `serf` shows as a skip (a failure under `CI=true`). Every process is killed and
//! reaped on drop; every port is ephemeral.

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;
#[macro_use]
mod e2e_support;

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_support::{Agent, Out, Runtime, run_program};

fn main() {
    tandem_tests::tools::run_trials(runtime_tests! {
        tandem_rtt_and_serf_rtt_print_the_same_estimate_as_against_serf_agents;
    });
}

/// How long coordinates may take to appear after the cluster converged (a ping a second).
const WAIT: Duration = Duration::from_secs(20);

/// `Estimated A <-> B rtt: 1.234 ms`: the estimate in ms, if `line` is that line.
fn estimate(line: &str, a: &str, b: &str) -> Option<f64> {
    let prefix = format!("Estimated {a} <-> {b} rtt: ");
    let ms = line.strip_prefix(&prefix)?.strip_suffix(" ms\n")?;
    let (whole, frac) = ms.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(whole) && frac.len() == 3 && digits(frac)).then(|| ms.parse().ok())?
}

/// What a CLI printed, stdout and stderr together: Serf's CLI prints its errors on stdout
/// (its `Ui` has no error writer), tandem's on stderr, as its other commands do.
fn text(o: &Out) -> String {
    format!("{}{}", o.stdout, o.stderr)
}

/// Runs `rtt` until it prints an estimate (coordinates appear once a ping went through).
fn wait_estimate(run: impl Fn() -> Out, a: &str, b: &str) -> f64 {
    let start = Instant::now();
    loop {
        let out = run();
        if out.code == Some(0) {
            return estimate(&out.stdout, a, b)
                .unwrap_or_else(|| panic!("not serf's line: {out:?}"));
        }
        assert!(
            text(&out).starts_with("Could not find a coordinate for node"),
            "{out:?}"
        );
        assert!(
            start.elapsed() < WAIT,
            "no estimate after {WAIT:?}: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A real `serf agent`, killed on drop.
struct SerfAgent {
    child: Child,
    rpc: String,
    bind: String,
}

impl Drop for SerfAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on 127.0.0.1 for both TCP and UDP right now (memberlist binds both).
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn serf_agent(serf: &Path, name: &str) -> SerfAgent {
    let (bind, rpc) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let child = Command::new(serf)
        .args(["agent", "-node", name, "-bind", &bind, "-rpc-addr", &rpc])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serf agent");
    let agent = SerfAgent { child, rpc, bind };
    let start = Instant::now();
    while std::net::TcpStream::connect(&agent.rpc).is_err() {
        assert!(start.elapsed() < WAIT, "serf agent {name} never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    agent
}

/// What `serf rtt` prints against real Serf agents: the reference the tandem runs are
/// compared with (line shape, errors and exit codes).
fn serf_reference(serf: &Path) -> (String, Out, Out) {
    let a = serf_agent(serf, "ra");
    let b = serf_agent(serf, "rb");
    let rpc = format!("-rpc-addr={}", a.rpc);
    let joined = run_program(serf, &["join", &rpc, &b.bind]);
    assert_eq!(joined.code, Some(0), "{joined:?}");
    let ms = wait_estimate(|| run_program(serf, &["rtt", &rpc, "ra", "rb"]), "ra", "rb");
    let line = format!("Estimated ra <-> rb rtt: {ms:.3} ms\n");
    let unknown = run_program(serf, &["rtt", &rpc, "nobody"]);
    let no_args = run_program(serf, &["rtt", &rpc]);
    (line, unknown, no_args)
}

fn tandem_rtt_and_serf_rtt_print_the_same_estimate_as_against_serf_agents(rt: Runtime) {
    let serf = tandem_tests::tools::serf();
    let (reference, serf_unknown, serf_no_args) = serf_reference(&serf);
    assert!(estimate(&reference, "ra", "rb").is_some(), "{reference}");
    assert_eq!(serf_unknown.code, Some(1));
    assert_eq!(
        text(&serf_unknown),
        "Could not find a coordinate for node \"nobody\"\n"
    );

    let agents = [1, 2, 3].map(|i| Agent::start(rt, &["-node", &format!("t{i}")]));
    for a in &agents[1..] {
        let to = format!("127.0.0.1:{}", agents[0].lan_port());
        assert_eq!(a.cli("join", &[&to]).code, Some(0));
    }
    let rpc = format!("-rpc-addr={}", agents[0].rpc_addr());
    let ms = wait_estimate(
        || run_program(&serf, &["rtt", &rpc, "t2", "t3"]),
        "t2",
        "t3",
    );
    // Loopback: well under a millisecond a round, but the estimate is an estimate.
    assert!(ms > 0.0 && ms < 50.0, "{ms}");
    // Both CLIs, asked the same agent the same question, compute the same line (the
    // coordinates may move between two calls: ask until two answers agree).
    let start = Instant::now();
    loop {
        let s = run_program(&serf, &["rtt", &rpc, "t2", "t3"]);
        let t = agents[0].cli("rtt", &["t2", "t3"]);
        if s.stdout == t.stdout {
            assert_eq!((s.code, t.code), (Some(0), Some(0)));
            assert!(estimate(&t.stdout, "t2", "t3").is_some(), "{t:?}");
            break;
        }
        assert!(start.elapsed() < WAIT, "serf {s:?} vs tandem {t:?}");
    }
    // The agent counts what it measured: `info -format json` (`stats`) on a real runtime.
    let info: serde_json::Value =
        serde_json::from_str(agents[0].cli("info", &["-format=json"]).ok()).expect("JSON");
    let samples: u64 = info["gossip"]["coordinate_samples"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("gossip.coordinate_samples");
    assert!(samples > 0, "{info}");
    assert_eq!(info["gossip"]["coordinates_rejected"], "0", "{info}");
    assert_eq!(info["serf"]["coordinate_resets"], "0", "{info}");
    // One name: the other is the agent's own (both CLIs ask `stats` for it).
    let t = agents[0].cli("rtt", &["t2"]);
    assert!(estimate(&t.stdout, "t2", "t1").is_some(), "{t:?}");
    let s = run_program(&serf, &["rtt", &rpc, "t2"]);
    assert!(estimate(&s.stdout, "t2", "t1").is_some(), "{s:?}");
    // The same errors, with the same exit codes, as against Serf.
    let unknown = agents[0].cli("rtt", &["nobody"]);
    assert_eq!(
        (unknown.code, text(&unknown)),
        (serf_unknown.code, text(&serf_unknown))
    );
    assert_eq!(unknown.stdout, "", "tandem's errors go to stderr");
    let s = run_program(&serf, &["rtt", &rpc, "nobody"]);
    assert_eq!((s.code, text(&s)), (serf_unknown.code, text(&serf_unknown)));
    let none = agents[0].cli("rtt", &[]);
    assert_eq!(none.code, serf_no_args.code);
    let first = |o: &Out| text(o).lines().next().unwrap_or_default().to_string();
    assert_eq!(first(&none), first(&serf_no_args));
    assert_eq!(first(&none), "One or two node names must be specified");
}
