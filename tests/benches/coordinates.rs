//! The network-coordinate table: 100 simulated agents on a known latency matrix (five
//! regions of a wide-area network, or racks in one datacenter), and how far each pair's
//! estimate is from the true round trip after so many seconds (virtual time; each node pings
//! one member per second). Prints the table in BENCHMARKS.md and each run's wall time.
//!
//! Run: `cargo bench -p tandem-tests --bench coordinates` (both topologies, 100 nodes), or
//! with `N:TOPOLOGY` arguments (`cargo bench -p tandem-tests --bench coordinates -- 25:regions`).

use std::time::{Duration, Instant as WallInstant};

use tandem_tests::coord_sim::{
    COORD_TABLE_HEADER, SERF_SEEDS, Topology, coord_lines, coord_run, serf_scenarios,
};

fn main() {
    let args: Vec<(usize, Topology)> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            let (n, t) = a.split_once(':')?;
            let t = match t {
                "regions" => Topology::Regions,
                "datacenter" => Topology::Datacenter,
                _ => return None,
            };
            Some((n.parse().ok()?, t))
        })
        .collect();
    let plan = if args.is_empty() {
        vec![(100, Topology::Regions), (100, Topology::Datacenter)]
    } else {
        args
    };
    println!(
        "| Serf's scenario | average relative error: median of {SERF_SEEDS} seeds (best – worst) | \
         maximum: median (best – worst) | seeds within both of Serf's bounds | Serf's bounds \
         (ErrorAvg / ErrorMax) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for s in serf_scenarios() {
        let pct = |v: f64| format!("{:.4} %", v * 100.0);
        let spread = |pick: fn(&(f64, f64)) -> f64| {
            let mut v: Vec<f64> = s.got.iter().map(pick).collect();
            v.sort_by(f64::total_cmp);
            format!(
                "{} ({} – {})",
                pct(v[v.len() / 2]),
                pct(v[0]),
                pct(v[v.len() - 1])
            )
        };
        let within = s
            .got
            .iter()
            .filter(|(a, m)| *a <= s.serf_bounds.0 && *m <= s.serf_bounds.1)
            .count();
        println!(
            "| {} | {} | {} | {within} of {SERF_SEEDS} | {} / {} |",
            s.name,
            spread(|g| g.0),
            spread(|g| g.1),
            pct(s.serf_bounds.0),
            pct(s.serf_bounds.1)
        );
    }
    println!();
    let checkpoints = [30, 60, 120, 300, 600].map(Duration::from_secs);
    println!("{COORD_TABLE_HEADER}");
    for (n, topology) in plan {
        let wall = WallInstant::now();
        let run = coord_run(n, topology, &checkpoints);
        for line in coord_lines(&run) {
            println!("{line}");
        }
        eprintln!(
            "{} {n}: {:.1} s wall",
            topology.name(),
            wall.elapsed().as_secs_f64()
        );
    }
}
