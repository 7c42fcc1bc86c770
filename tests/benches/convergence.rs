//! The convergence table: for clusters of 10, 100 and 1000 nodes on networks losing 0 %,
//! 10 % and 30 % of datagrams, the virtual seconds until every node sees every node alive
//! after joins, and until a killed node is `failed` everywhere; plus the wall time each
//! simulated second costs.
//!
//! Run: `cargo bench -p tandem-tests --bench convergence`. It prints a markdown table and
//! rewrites `tests/snapshots/convergence.md` (simulated seconds only, deterministic), which
//! `tests/tests/cluster_convergence_snapshot.rs` checks for N = 10 and N = 100.
//! `cargo bench -p tandem-tests --bench convergence -- 10 100` runs only those sizes and
//! leaves the snapshot alone.

use std::time::Instant as WallInstant;

use tandem_tests::netsim::{
    ConvergenceRow, convergence_line, convergence_run, convergence_snapshot,
};

fn main() {
    // Arguments: sizes (`100`), or size:loss pairs (`1000:30`), to run a part.
    let args: Vec<(usize, Option<u32>)> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            let (n, loss) = a
                .split_once(':')
                .map_or((a.as_str(), None), |(n, l)| (n, Some(l)));
            Some((n.parse().ok()?, loss.and_then(|l| l.parse().ok())))
        })
        .collect();
    let plan: Vec<(usize, u32)> = if args.is_empty() {
        [10, 100, 1000]
            .into_iter()
            .flat_map(|n| [0, 10, 30].map(|l| (n, l)))
            .collect()
    } else {
        args.iter()
            .flat_map(|&(n, l)| match l {
                Some(l) => vec![(n, l)],
                None => vec![(n, 0), (n, 10), (n, 30)],
            })
            .collect()
    };
    println!(
        "| nodes | loss | join (s) | failure (s) | simulated (s) | wall (s) | wall ms per simulated s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows: Vec<ConvergenceRow> = Vec::new();
    for &(n, loss) in &plan {
        {
            let t = WallInstant::now();
            let row = convergence_run(n, loss);
            let wall = t.elapsed();
            let sim = row.simulated.as_secs_f64();
            let line = convergence_line(&row);
            println!(
                "{} {:.1} | {:.2} | {:.2} |",
                line,
                sim,
                wall.as_secs_f64(),
                wall.as_secs_f64() * 1000.0 / sim.max(1e-9)
            );
            rows.push(row);
        }
    }
    if args.is_empty() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots/convergence.md");
        std::fs::write(path, convergence_snapshot(&rows)).expect("write the snapshot");
        println!("\nwrote {path}");
    }
}
