//! Network coordinates on the simulated network: agents whose datagrams take a known
//! latency per pair, the estimate each pair's coordinates give against the true round trip,
//! after so many seconds of pinging (one COORD ping per node per probe period, 1 s).
//!
//! Two latency matrices, both seeded and deterministic:
//!
//! - **regions**: five regions laid out so their distances resemble real inter-region round
//!   trips (≈ 60–215 ms); each node sits a few ms from its region's centre and has an
//!   access link (height) of 0.1–1.5 ms; every pair's path is 0–25 % longer than the
//!   straight line, so the matrix is not exactly Euclidean (as Internet RTTs are not).
//! - **datacenter**: racks of 10; 20–60 µs per node to its switch, 50 µs through the rack
//!   switch, 200–400 µs more between two racks.
//!
//! Each direction of a datagram takes half the pair's RTT plus a uniform jitter; the true
//! RTT an estimate is compared with is the pair's mean round trip (RTT + jitter).
//!
//! Used by `tests/tests/cluster_coordinates.rs` (small runs) and
//! `cargo bench -p tandem-tests --bench coordinates` (the 100-node table in BENCHMARKS.md).

use std::time::Duration;

use tandem_core::Pool;
use tandem_core::cluster::{Cluster, Coordinate};

use crate::netsim::{Net, NetConfig, SimRng, cluster_net, converged, join_all, node_name};

/// A latency matrix to simulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Five regions of a wide-area network.
    Regions,
    /// Racks in one datacenter.
    Datacenter,
}

impl Topology {
    /// Its name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Topology::Regions => "regions",
            Topology::Datacenter => "datacenter",
        }
    }

    /// Up to how much each direction of a datagram is delayed beyond half the RTT.
    pub fn jitter(self) -> Duration {
        match self {
            Topology::Regions => Duration::from_micros(500),
            Topology::Datacenter => Duration::from_micros(10),
        }
    }

    /// The round trip of every pair (symmetric, zero on the diagonal), in seconds.
    pub fn rtts(self, n: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = SimRng::new(seed ^ 0xc00d);
        match self {
            Topology::Regions => {
                // (x, y) in ms of round trip.
                const CENTRES: [(f64, f64); 5] = [
                    (0.0, 0.0),
                    (62.0, 0.0),
                    (-35.0, 65.0),
                    (150.0, 60.0),
                    (20.0, -110.0),
                ];
                let nodes: Vec<((f64, f64), f64)> = (0..n)
                    .map(|i| {
                        let (cx, cy) = CENTRES[i % CENTRES.len()];
                        let (dx, dy) = (gauss(&mut rng) * 1.5, gauss(&mut rng) * 1.5);
                        let height = 0.1 + rng.unit() * 1.4;
                        ((cx + dx, cy + dy), height)
                    })
                    .collect();
                matrix(n, |i, j| {
                    let ((x1, y1), h1) = nodes[i];
                    let ((x2, y2), h2) = nodes[j];
                    let straight = ((x1 - x2).powi(2) + (y1 - y2).powi(2)).sqrt();
                    let detour = 1.0 + rng.unit() * 0.25;
                    (straight * detour + h1 + h2) / 1000.0
                })
            }
            Topology::Datacenter => {
                let racks = n.div_ceil(10);
                let link: Vec<f64> = (0..n).map(|_| 20.0 + rng.unit() * 40.0).collect();
                let between = matrix(racks, |_, _| 200.0 + rng.unit() * 200.0);
                matrix(n, |i, j| {
                    (link[i] + link[j] + 50.0 + between[i / 10][j / 10]) / 1e6
                })
            }
        }
    }
}

/// A standard normal sample (Box-Muller).
fn gauss(rng: &mut SimRng) -> f64 {
    let u1 = 1.0 - rng.unit();
    let u2 = rng.unit();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// How good the estimates were at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorRow {
    /// Time since the cluster converged (each node has pinged about once a second).
    pub after: Duration,
    /// Median and 90th percentile of |estimate − true| / true over every pair.
    pub rel: (f64, f64),
    /// Median and 90th percentile of |estimate − true|, in ms.
    pub abs_ms: (f64, f64),
    /// Coordinates node 0 holds for other members (what its `get-coordinate` can answer).
    pub held_by_node0: usize,
    /// Coordinate resets summed over the nodes.
    pub resets: u64,
    /// Median and 90th percentile of the relative error over the pairs more than 10 ms
    /// apart (none inside a datacenter).
    pub far_rel: Option<(f64, f64)>,
    /// Median and 90th percentile of the relative error of the estimates `rtt A B` gets
    /// from node 0 (its `get-coordinate` answers, which lag the nodes' own coordinates),
    /// over the pairs of other nodes whose coordinates it holds.
    pub via_node0_rel: (f64, f64),
}

/// A run: the true RTTs' spread and the error at each checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct CoordRun {
    /// Nodes.
    pub nodes: usize,
    /// The latency matrix.
    pub topology: Topology,
    /// Median and 90th percentile of the true RTTs, in ms.
    pub true_ms: (f64, f64),
    /// One row per checkpoint.
    pub rows: Vec<ErrorRow>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

/// The error of every pair's estimate at this instant.
pub fn evaluate(sim: &Net<Cluster>, truth: &[Vec<f64>], after: Duration) -> ErrorRow {
    let n = sim.len();
    let coords: Vec<Coordinate> = (0..n).map(|i| sim.node(i).coordinate()).collect();
    let (mut rel, mut abs, mut far) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        for j in i + 1..n {
            let est = coords[i].distance_to(&coords[j]).as_secs_f64();
            let t = truth[i][j];
            rel.push((est - t).abs() / t);
            abs.push((est - t).abs() * 1000.0);
            if t > 0.010 {
                far.push((est - t).abs() / t);
            }
        }
    }
    rel.sort_by(f64::total_cmp);
    abs.sort_by(f64::total_cmp);
    far.sort_by(f64::total_cmp);
    let held: Vec<Option<Coordinate>> = (0..n)
        .map(|i| sim.node(0).coordinate_of(&node_name(i)))
        .collect();
    let mut via = Vec::new();
    for i in 1..n {
        for j in i + 1..n {
            if let (Some(a), Some(b)) = (&held[i], &held[j]) {
                let est = a.distance_to(b).as_secs_f64();
                via.push((est - truth[i][j]).abs() / truth[i][j]);
            }
        }
    }
    via.sort_by(f64::total_cmp);
    ErrorRow {
        after,
        rel: (percentile(&rel, 0.5), percentile(&rel, 0.9)),
        abs_ms: (percentile(&abs, 0.5), percentile(&abs, 0.9)),
        held_by_node0: sim.node(0).coordinates_held(),
        resets: (0..n).map(|i| sim.node(i).coordinate_resets()).sum(),
        far_rel: (!far.is_empty()).then(|| (percentile(&far, 0.5), percentile(&far, 0.9))),
        via_node0_rel: (percentile(&via, 0.5), percentile(&via, 0.9)),
    }
}

/// `nodes` agents on `topology` join node 0; once they converge, the error is measured at
/// each checkpoint (time since convergence). Deterministic for its arguments.
pub fn coord_run(nodes: usize, topology: Topology, checkpoints: &[Duration]) -> CoordRun {
    let seed = nodes as u64 * 31 + topology as u64;
    let rtts = topology.rtts(nodes, seed);
    let jitter = topology.jitter();
    // The mean round trip: half the RTT each way plus, on average, half the jitter.
    let truth: Vec<Vec<f64>> = rtts
        .iter()
        .map(|row| row.iter().map(|r| r + jitter.as_secs_f64()).collect())
        .collect();
    let one_way: Vec<Vec<Duration>> = rtts
        .iter()
        .map(|row| {
            row.iter()
                .map(|r| Duration::from_secs_f64(r / 2.0))
                .collect()
        })
        .collect();
    let net = NetConfig {
        seed,
        ..NetConfig::default()
    };
    let mut sim = cluster_net(nodes, net, seed, |_, _| {});
    sim.record_events = false;
    sim.set_pair_latency(one_way, jitter);
    join_all(&mut sim, 0);
    sim.run_until_cond(Duration::from_secs(600), Duration::from_millis(500), |s| {
        converged(s, Pool::Lan)
    });
    let mut all: Vec<f64> = Vec::new();
    for (i, row) in truth.iter().enumerate() {
        all.extend(row.iter().skip(i + 1));
    }
    all.sort_by(f64::total_cmp);
    let mut rows = Vec::new();
    let mut elapsed = Duration::ZERO;
    for &at in checkpoints {
        sim.run_for(at.saturating_sub(elapsed));
        elapsed = elapsed.max(at);
        rows.push(evaluate(&sim, &truth, at));
    }
    CoordRun {
        nodes,
        topology,
        true_ms: (percentile(&all, 0.5) * 1e3, percentile(&all, 0.9) * 1e3),
        rows,
    }
}

/// The table's header.
pub const COORD_TABLE_HEADER: &str = "| topology | nodes | true RTT median / p90 | after | \
     relative error median / p90 | absolute error median / p90 | relative error, pairs > 10 ms apart | \
     relative error as node 0's `get-coordinate` gives it | coordinates node 0 holds | resets |\n\
     |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

/// The run's rows of the table.
pub fn coord_lines(run: &CoordRun) -> Vec<String> {
    run.rows
        .iter()
        .map(|r| {
            format!(
                "| {} | {} | {:.2} / {:.2} ms | {} s | {:.1} % / {:.1} % | {:.3} / {:.3} ms | {} | {:.1} % / {:.1} % | {} of {} | {} |",
                run.topology.name(),
                run.nodes,
                run.true_ms.0,
                run.true_ms.1,
                r.after.as_secs(),
                r.rel.0 * 100.0,
                r.rel.1 * 100.0,
                r.abs_ms.0,
                r.abs_ms.1,
                r.far_rel.map_or("—".to_string(), |(m, p)| format!(
                    "{:.1} % / {:.1} %",
                    m * 100.0,
                    p * 100.0
                )),
                r.via_node0_rel.0 * 100.0,
                r.via_node0_rel.1 * 100.0,
                r.held_by_node0,
                run.nodes - 1,
                r.resets,
            )
        })
        .collect()
}

/// One of Serf's performance scenarios (`coordinate/performance_test.go`, `phantom.go`)
/// through tandem's Vivaldi: its name, the (average, maximum) relative error over every
/// pair after 1,000 cycles for each of [`SERF_SEEDS`] seeds, and Serf's bounds for them.
/// Serf tunes its bounds to one run (Go's `rand.Seed(1)`); the outcome varies with the
/// sequence of random picks, several-fold for the scenarios whose errors are tiny.
pub struct SerfScenario {
    /// Serf's test name.
    pub name: &'static str,
    /// Average and maximum relative error, one pair per seed.
    pub got: Vec<(f64, f64)>,
    /// `ErrorAvg` and `ErrorMax` bounds in Serf's test.
    pub serf_bounds: (f64, f64),
}

/// Serf's `Simulate` (each cycle, each node samples one random node) and `Evaluate`.
fn serf_simulate(truth: &[Vec<f64>], cycles: usize, seed: u64) -> (f64, f64) {
    use tandem_core::cluster::{Vivaldi, VivaldiConfig};
    let n = truth.len();
    let mut rng = SimRng::new(seed);
    let mut pick = rand_core_shim(seed);
    let mut clients: Vec<Vivaldi<usize>> = (0..n)
        .map(|_| Vivaldi::new(VivaldiConfig::default()))
        .collect();
    for _ in 0..cycles {
        for i in 0..n {
            let j = (rng.next_u64() % n as u64) as usize;
            if j != i {
                let c = *clients[j].coordinate();
                let rtt = Duration::from_nanos((truth[i][j] * 1e9) as u64);
                let _ = clients[i].update(&j, &c, rtt, &mut pick);
            }
        }
    }
    let (mut sum, mut max, mut count) = (0.0, 0.0f64, 0u32);
    for i in 0..n {
        for j in i + 1..n {
            let est = clients[i]
                .distance_to(clients[j].coordinate())
                .as_secs_f64();
            let e = (est - truth[i][j]).abs() / truth[i][j];
            sum += e;
            max = max.max(e);
            count += 1;
        }
    }
    (sum / f64::from(count), max)
}

/// The seeded generator Vivaldi takes for its one random choice.
fn rand_core_shim(seed: u64) -> rand::rngs::Xoshiro256PlusPlus {
    use rand::SeedableRng as _;
    rand::rngs::Xoshiro256PlusPlus::seed_from_u64(seed)
}

/// A symmetric matrix with a zero diagonal: `f(i, j)` for each pair `i < j`, in order.
#[allow(clippy::needless_range_loop)] // both m[i][j] and m[j][i] are written
fn matrix(n: usize, mut f: impl FnMut(usize, usize) -> f64) -> Vec<Vec<f64>> {
    let mut m = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            m[i][j] = f(i, j);
            m[j][i] = m[i][j];
        }
    }
    m
}

/// Seeds each of Serf's scenarios runs with.
pub const SERF_SEEDS: u64 = 8;

fn seeds(truth: &[Vec<f64>]) -> Vec<(f64, f64)> {
    (1..=SERF_SEEDS)
        .map(|seed| serf_simulate(truth, 1000, seed))
        .collect()
}

/// Serf's Line, Grid, Split and Random scenarios (8 dimensions; Height and Drift need 2).
pub fn serf_scenarios() -> Vec<SerfScenario> {
    let mut rng = SimRng::new(1);
    let random = matrix(25, |_, _| gauss(&mut rng) * 0.010 + 0.100);
    let grid = matrix(25, |i, j| {
        let (x1, y1) = ((i % 5) as f64, (i / 5) as f64);
        let (x2, y2) = ((j % 5) as f64, (j / 5) as f64);
        ((x2 - x1).powi(2) + (y2 - y1).powi(2)).sqrt() * 0.010
    });
    vec![
        SerfScenario {
            name: "Line (10 nodes, 10 ms apart)",
            got: seeds(&matrix(10, |i, j| (j - i) as f64 * 0.010)),
            serf_bounds: (0.0018, 0.0092),
        },
        SerfScenario {
            name: "Grid (25 nodes, 10 ms apart)",
            got: seeds(&grid),
            serf_bounds: (0.0015, 0.022),
        },
        SerfScenario {
            name: "Split (25 nodes, 1 ms LAN, +10 ms between halves)",
            got: seeds(&matrix(25, |i, j| {
                if (i <= 12) != (j <= 12) { 0.011 } else { 0.001 }
            })),
            serf_bounds: (0.000060, 0.00048),
        },
        SerfScenario {
            name: "Random (25 nodes, 100 ± 10 ms)",
            got: seeds(&random),
            serf_bounds: (0.075, 0.33),
        },
    ]
}
#[test]
fn scratch_split_seeds() {
    for seed in 1..9 {
        let m = matrix(
            25,
            |i, j| if (i <= 12) != (j <= 12) { 0.011 } else { 0.001 },
        );
        let l = matrix(10, |i, j| (j - i) as f64 * 0.010);
        println!(
            "seed {seed}: split {:?} line {:?}",
            serf_simulate(&m, 1000, seed),
            serf_simulate(&l, 1000, seed)
        );
    }
}
