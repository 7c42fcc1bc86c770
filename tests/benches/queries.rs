//! The query table: a query from node 0 to clusters of 100 and 1,000 simulated agents on
//! networks losing 0 % and 10 % of datagrams, with Serf's default timeout; every node
//! responds as soon as it sees the query. What fraction acked and responded, and when
//! (virtual seconds from the query, resolution 10 ms), plus the wall time of each run.
//!
//! Run: `cargo bench -p tandem-tests --bench queries` (all rows), or with `N:LOSS[:RELAY]`
//! arguments for some (`cargo bench -p tandem-tests --bench queries -- 100:10:3`).

use std::time::Instant as WallInstant;

use tandem_tests::query_sim::{QUERY_TABLE_HEADER, query_line, query_runs};

fn main() {
    let args: Vec<(usize, u32, u8)> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            let mut it = a.split(':');
            let n = it.next()?.parse().ok()?;
            let loss = it.next().and_then(|l| l.parse().ok()).unwrap_or(0);
            let relay = it.next().and_then(|r| r.parse().ok()).unwrap_or(0);
            Some((n, loss, relay))
        })
        .collect();
    let plan = if args.is_empty() {
        vec![
            (100, 0, 0),
            (100, 10, 0),
            (100, 10, 3),
            (1000, 0, 0),
            (1000, 10, 0),
            (1000, 10, 3),
        ]
    } else {
        args
    };
    println!(
        "| relay | {}",
        &QUERY_TABLE_HEADER[2..].replace("\n|", "\n|---:|")
    );
    // Consecutive rows of one size and loss share a cluster (it joins once); the wall
    // time of the first includes the join.
    let mut i = 0;
    while i < plan.len() {
        let (n, loss, _) = plan[i];
        let group: Vec<u8> = plan[i..]
            .iter()
            .take_while(|&&(m, l, _)| (m, l) == (n, loss))
            .map(|&(_, _, r)| r)
            .collect();
        i += group.len();
        let wall = WallInstant::now();
        for (row, relay) in query_runs(n, loss, &group).iter().zip(&group) {
            println!(
                "| {relay} {} wall {:.1} s",
                query_line(row),
                wall.elapsed().as_secs_f64()
            );
        }
    }
}
