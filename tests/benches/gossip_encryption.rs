//! What gossip encryption costs: the same simulated clusters (100 nodes by default, no
//! loss, 1–10 ms latency, default LAN timing) run in plaintext and sealed with one AES-256-GCM
//! key, side by side in one run, interleaved, three rounds each. Reported per variant: the
//! simulated seconds until every node sees every node alive, the wall time per simulated
//! second of the whole run (join plus 30 simulated seconds of steady gossip), the datagrams
//! and bytes sent, and the encrypted/plaintext ratio of the wall time.
//!
//! Run: `cargo bench -p tandem-tests --bench gossip_encryption` (`-- N` for N nodes).

use std::time::{Duration, Instant as WallInstant};

use tandem_core::cluster::{GossipKey, Keyring, Pool};
use tandem_tests::netsim::{NetConfig, cluster_net, converged, join_all};

const STEADY: Duration = Duration::from_secs(30);
const ROUNDS: usize = 3;

struct Run {
    join: Duration,
    simulated: Duration,
    wall: Duration,
    datagrams: u64,
    bytes: u64,
}

fn run(nodes: usize, keyring: Option<&Keyring>) -> Run {
    let net = NetConfig {
        seed: 42,
        latency: (Duration::from_millis(1), Duration::from_millis(10)),
        ..NetConfig::default()
    };
    let t = WallInstant::now();
    let mut sim = cluster_net(nodes, net, 42, |_, cfg| {
        if let Some(ring) = keyring {
            cfg.keyring = ring.clone();
        }
    });
    sim.record_events = false;
    let start = sim.now;
    join_all(&mut sim, 0);
    let join = sim
        .run_until_cond(Duration::from_secs(120), Duration::from_millis(100), |s| {
            converged(s, Pool::Lan)
        })
        .expect("the cluster converges");
    sim.run_for(STEADY);
    let wall = t.elapsed();
    for i in 0..sim.len() {
        let s = sim.node(i).stats();
        assert_eq!(s.decrypt_failures, 0, "every sealed datagram opened");
    }
    Run {
        join,
        simulated: sim.now - start,
        wall,
        datagrams: sim.stats.sent,
        bytes: sim.stats.sent_bytes,
    }
}

fn main() {
    let nodes: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let key = GossipKey::new(&[7; 32]).expect("a 32-byte key");
    let ring = Keyring::new(key, []);
    let (mut plain, mut sealed) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        plain.push(run(nodes, None));
        sealed.push(run(nodes, Some(&ring)));
    }
    let per_sim_s = |r: &Run| r.wall.as_secs_f64() * 1000.0 / r.simulated.as_secs_f64();
    let median = |v: &[Run]| {
        let mut x: Vec<f64> = v.iter().map(per_sim_s).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    println!(
        "{nodes} nodes, join plus {} simulated s, {ROUNDS} rounds each, interleaved",
        STEADY.as_secs()
    );
    println!();
    println!(
        "| gossip | join (simulated s) | datagrams sent | bytes sent | bytes per datagram | wall ms per simulated s (median of {ROUNDS}) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, v) in [("plaintext", &plain), ("AES-256-GCM", &sealed)] {
        let r = &v[0];
        println!(
            "| {name} | {:.1} | {} | {} | {:.0} | {:.2} |",
            r.join.as_secs_f64(),
            r.datagrams,
            r.bytes,
            r.bytes as f64 / r.datagrams.max(1) as f64,
            median(v)
        );
    }
    println!();
    println!(
        "encrypted / plaintext wall time: {:.2}",
        median(&sealed) / median(&plain)
    );
}
