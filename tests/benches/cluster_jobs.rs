//! The cluster-job table: agent 0 runs a targeted `exec` of a host command on `.*` in
//! clusters of whole simulated agents (remote exec enabled everywhere) on networks losing
//! 0 % and 10 % of datagrams; peer streams are reliable (TCP). How many nodes answered,
//! whether every node was accounted for, and the virtual time until the `exec` answered
//! (which is when the last node was accounted for), plus the wall time of each run.
//!
//! Run: `cargo bench -p tandem-tests --bench cluster_jobs` (100 agents at 0 % and 10 %), or
//! with `N:LOSS` arguments (`cargo bench -p tandem-tests --bench cluster_jobs -- 20:10`).

use std::time::Instant as WallInstant;

use tandem_tests::jobs_sim::jobs_run;

fn main() {
    let args: Vec<(usize, u32)> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            let mut it = a.split(':');
            let n = it.next()?.parse().ok()?;
            let loss = it.next().and_then(|l| l.parse().ok()).unwrap_or(0);
            Some((n, loss))
        })
        .collect();
    let plan = if args.is_empty() {
        vec![(100, 0), (100, 10)]
    } else {
        args
    };
    println!("| nodes | loss | answered | accounted for | last answer (virtual s) | wall (s) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (n, loss) in plan {
        let wall = WallInstant::now();
        let row = jobs_run(n, loss);
        println!(
            "| {} | {} % | {} | {} | {:.2} | {:.1} |",
            row.nodes,
            row.loss_percent,
            row.answered,
            row.accounted,
            row.last_answer.as_secs_f64(),
            wall.elapsed().as_secs_f64()
        );
    }
}
