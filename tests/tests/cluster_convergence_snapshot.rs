//! Re-runs the N = 10 and N = 100 rows of the convergence table and compares them with
//! `tests/snapshots/convergence.md`, so a change in how fast the cluster converges or
//! detects a failure shows up as a diff (smoltcp's `netsim` snapshot, by hand).
//!
//! The runs are deterministic. After an intended change, regenerate the whole table with
//! `cargo bench -p tandem-tests --bench convergence` and review the diff.

use tandem_tests::netsim::{convergence_line, convergence_run};

#[test]
fn convergence_rows_for_10_and_100_nodes_match_the_snapshot() {
    let snapshot = include_str!("../snapshots/convergence.md");
    let plan: Vec<(usize, u32)> = [10, 100]
        .into_iter()
        .flat_map(|n| [0, 10, 30].map(|loss| (n, loss)))
        .collect();
    // Independent runs: one thread each.
    let lines: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = plan
            .iter()
            .map(|&(n, loss)| s.spawn(move || convergence_line(&convergence_run(n, loss))))
            .collect();
        runs.into_iter().map(|h| h.join().expect("run")).collect()
    });
    let mut diff = Vec::new();
    for (&(nodes, loss), got) in plan.iter().zip(lines) {
        let prefix = format!("| {nodes} | {loss} % |");
        let want = snapshot.lines().find(|l| l.starts_with(&prefix));
        if want != Some(got.as_str()) {
            diff.push(format!("- {}\n+ {got}", want.unwrap_or("(missing)")));
        }
    }
    assert!(
        diff.is_empty(),
        "convergence changed (regenerate with `cargo bench -p tandem-tests --bench convergence`):\n{}",
        diff.join("\n")
    );
}
