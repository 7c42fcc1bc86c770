//! `keys` end to end: Debian's `serf keys` (provisioned by `tandem_tests::tools::serf`) and
//! `tandem keys` against a three-agent tandem cluster print the same lines, with the same exit
//! codes, as `serf keys` prints against three real `serf agent`s started by the test — with
//! encryption (a rotation: list, install, use, a refused remove, remove, a bad key) and
//! without (Serf's failures). The agents keep their keyring in `-keyring-file`s, which follow
//! the rotation, and an agent restarted on its file rejoins under the new key. Lines are
//! compared as sorted sets where Serf's order is a Go map's (keys, failing nodes). Every case
//! runs on both runtimes; `harness = false`, so a missing `serf` shows as a skip (a failure
//! under `CI=true`). Every process is killed and reaped on drop; every port is ephemeral.

#[path = "conformance_rpc_support/mod.rs"]
mod rpc_support;
#[macro_use]
mod e2e_support;

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_support::{Agent, Out, Runtime, TempDir, run_program};

fn main() {
    tandem_tests::tools::run_trials(runtime_tests! {
        serf_keys_rotates_a_tandem_cluster_as_it_rotates_serf_agents;
        serf_keys_without_encryption_fails_as_against_serf_agents;
    });
}

const WAIT: Duration = Duration::from_secs(30);
const K1: &str = "AAECAwQFBgcICQoLDA0ODw==";
const K2: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const NAMES: [&str; 3] = ["k1", "k2", "k3"];

/// The `keys` invocations of a rotation, in order.
const ROTATION: [&[&str]; 8] = [
    &["-list"],
    &["-install", K2],
    &["-list"],
    &["-use", K2],
    &["-remove", K2],
    &["-remove", K1],
    &["-list"],
    &["-install", "notbase64!"],
];

/// The `keys` invocations without encryption.
const PLAIN: [&[&str]; 4] = [
    &["-list"],
    &["-install", K1],
    &["-use", K1],
    &["-remove", K1],
];

/// What a CLI printed, as a sorted list of lines (stdout and stderr together: Serf's CLI
/// prints its errors on stdout, tandem's on stderr), and its exit code.
fn seen(o: &Out) -> (Option<i32>, Vec<String>) {
    let mut lines: Vec<String> = format!("{}{}", o.stdout, o.stderr)
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    (o.code, lines)
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

fn serf_agent(serf: &Path, name: &str, keyring: Option<&Path>) -> SerfAgent {
    let (bind, rpc) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut cmd = Command::new(serf);
    cmd.args(["agent", "-node", name, "-bind", &bind, "-rpc-addr", &rpc]);
    if let Some(path) = keyring {
        cmd.arg("-keyring-file").arg(path);
    }
    let child = cmd
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

/// Waits until `members` (run by `members`) lists `n` alive members.
fn wait_alive(members: impl Fn() -> Out, n: usize) {
    let start = Instant::now();
    loop {
        let out = members();
        if out.stdout.lines().filter(|l| l.contains(" alive")).count() == n {
            return;
        }
        assert!(start.elapsed() < WAIT, "not {n} alive: {out:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A keyring file holding `keys`, as Serf reads it.
fn keyring_file(dir: &TempDir, name: &str, keys: &[&str]) -> std::path::PathBuf {
    let path = dir.0.join(format!("{name}.keyring"));
    std::fs::write(&path, serde_json::to_string(keys).unwrap()).unwrap();
    path
}

/// Three real Serf agents (with keyring files holding K1 when `encrypted`), joined; what
/// `serf keys` prints for each of `steps`.
fn serf_reference(
    serf: &Path,
    encrypted: bool,
    steps: &[&[&str]],
) -> Vec<(Option<i32>, Vec<String>)> {
    let dir = TempDir::new("serf-keys");
    let agents: Vec<SerfAgent> = NAMES
        .iter()
        .map(|n| {
            let file = encrypted.then(|| keyring_file(&dir, n, &[K1]));
            serf_agent(serf, n, file.as_deref())
        })
        .collect();
    let rpc = format!("-rpc-addr={}", agents[0].rpc);
    for a in &agents[1..] {
        let joined = run_program(serf, &["join", &rpc, &a.bind]);
        assert_eq!(joined.code, Some(0), "{joined:?}");
    }
    wait_alive(|| run_program(serf, &["members", &rpc]), 3);
    steps
        .iter()
        .map(|args| {
            let mut all = vec!["keys", rpc.as_str()];
            all.extend_from_slice(args);
            seen(&run_program(serf, &all))
        })
        .collect()
}

/// Three tandem agents of `rt` named as the Serf ones (with keyring files holding K1 when
/// `encrypted`), joined.
fn tandem_cluster(rt: Runtime, dir: &TempDir, encrypted: bool) -> Vec<Agent> {
    let agents: Vec<Agent> = NAMES
        .iter()
        .map(|n| {
            let file = encrypted.then(|| keyring_file(dir, n, &[K1]));
            let file = file.map(|f| f.display().to_string());
            let mut flags = vec!["-node", n];
            if let Some(f) = &file {
                flags.extend(["-keyring-file", f.as_str()]);
            }
            Agent::start(rt, &flags)
        })
        .collect();
    for a in &agents[1..] {
        let to = format!("127.0.0.1:{}", agents[0].lan_port());
        assert_eq!(a.cli("join", &[&to]).code, Some(0));
    }
    wait_alive(|| agents[0].cli("members", &[]), 3);
    agents
}

/// Runs `steps` with `serf keys` and `tandem keys` (alternately, so each step's effect is
/// made once: serf first, then tandem repeats it idempotently) against `agent`, and checks
/// both print what `serf keys` printed against Serf at each step.
fn compare(serf: &Path, agent: &Agent, steps: &[&[&str]], want: &[(Option<i32>, Vec<String>)]) {
    let rpc = format!("-rpc-addr={}", agent.rpc_addr());
    for (args, want) in steps.iter().zip(want) {
        let mut all = vec!["keys", rpc.as_str()];
        all.extend_from_slice(args);
        let got = seen(&run_program(serf, &all));
        assert_eq!(&got, want, "serf keys {args:?} against tandem");
        let got = seen(&agent.cli("keys", args));
        assert_eq!(&got, want, "tandem keys {args:?}");
    }
}

fn serf_keys_rotates_a_tandem_cluster_as_it_rotates_serf_agents(rt: Runtime) {
    let serf = tandem_tests::tools::serf();
    let want = serf_reference(&serf, true, &ROTATION);
    // The reference is what Serf prints: pin the lines that matter.
    assert_eq!(
        want[0],
        (
            Some(0),
            vec![
                String::new(),
                "==> Asking all members for installed keys...".into(),
                "==> Keys gathered, listing cluster keys...".into(),
                format!("{K1}  [3/3]"),
            ]
        )
    );
    assert!(
        want[4]
            .1
            .contains(&"Error removing key: 3/3 nodes reported failure".into())
    );
    assert!(
        want[4]
            .1
            .contains(&"failed:  k2  Removing the primary key is not allowed".into()),
        "{:?}",
        want[4]
    );
    assert!(
        want[7]
            .1
            .contains(&"Error installing key: illegal base64 data at input byte 9".into())
    );

    let dir = TempDir::new("tandem-keys");
    let mut agents = tandem_cluster(rt, &dir, true);
    compare(&serf, &agents[0], &ROTATION, &want);
    // Every agent's keyring file followed the rotation: Serf's indented JSON.
    for n in NAMES {
        let text = std::fs::read_to_string(dir.0.join(format!("{n}.keyring"))).unwrap();
        assert_eq!(text, format!("[\n  \"{K2}\"\n]"), "{n}");
    }
    // A restarted agent comes back on its file, under the new key, and rejoins.
    let file = dir.0.join("k3.keyring").display().to_string();
    assert_eq!(agents[2].cli("leave", &[]).code, Some(0));
    agents.pop();
    let to = format!("127.0.0.1:{}", agents[0].lan_port());
    agents.push(Agent::start(
        rt,
        &["-node", "k3", "-keyring-file", &file, "-join", &to],
    ));
    wait_alive(|| agents[0].cli("members", &[]), 3);
    let listed = agents[2].cli("keys", &["-list"]);
    assert_eq!(seen(&listed), want[6], "{listed:?}");
}

fn serf_keys_without_encryption_fails_as_against_serf_agents(rt: Runtime) {
    let serf = tandem_tests::tools::serf();
    let want = serf_reference(&serf, false, &PLAIN);
    assert_eq!(want[0].0, Some(1));
    assert!(
        want[0]
            .1
            .contains(&"failed:  k1  Keyring is empty (encryption not enabled)".into()),
        "{:?}",
        want[0]
    );
    assert!(
        want[0]
            .1
            .contains(&"Failed to gather member keys: 3/3 nodes reported failure".into())
    );
    let dir = TempDir::new("tandem-keys-plain");
    let agents = tandem_cluster(rt, &dir, false);
    compare(&serf, &agents[1], &PLAIN, &want);
    // Two actions at once: refused before any RPC, in Serf's words and exit code.
    let rpc = format!("-rpc-addr={}", agents[1].rpc_addr());
    let both = ["-list", "-use", K1];
    let s = seen(&run_program(
        &serf,
        &[&["keys", rpc.as_str()][..], &both].concat(),
    ));
    let t = seen(&agents[1].cli("keys", &both));
    assert_eq!(t, s);
    assert_eq!(
        t,
        (
            Some(1),
            vec!["Only one of -install, -use, -remove, or -list allowed".to_string()]
        )
    );
}
