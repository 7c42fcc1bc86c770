//! Resident memory of the agent under test, sampled once a second, and the verdict.
//!
//! Criterion: the samples taken during the warm-up (the first `--warmup-pct` of the run)
//! are not judged. The baseline B is the median of the first five samples after it; every
//! later sample s must satisfy |s − B| ≤ `--rss-tolerance-pct` % of B. So both a leak (a
//! rising maximum) and a collapse are caught; the least-squares slope after the warm-up is
//! printed too, to show a trend too slow to cross the bound within the run.

use std::fmt::Write as _;
use std::time::Duration;

use crate::agent::rss_kib;
use crate::ctx::{Ctx, Plan};

/// Samples `VmRSS` of `pid` every second until the load stops; a vanished agent stops the
/// run. Returns (seconds since the start, KiB).
pub fn sample(ctx: &Ctx, pid: u32) -> Vec<(f64, u64)> {
    let mut out = Vec::new();
    loop {
        match rss_kib(pid) {
            Some(k) => out.push((ctx.at(), k)),
            None => {
                ctx.fail("the agent under test exited");
                ctx.stop();
                return out;
            }
        }
        if !ctx.sleep(Duration::from_secs(1)) {
            return out;
        }
    }
}

#[derive(Default)]
pub struct Verdict {
    pub warmup_end: f64,
    pub baseline: u64,
    pub min: u64,
    pub max: u64,
    pub end: u64,
    pub low_pct: f64,
    pub high_pct: f64,
    pub slope_kib_per_min: f64,
    pub judged: usize,
    pub failure: Option<String>,
}

pub fn verdict(plan: &Plan, samples: &[(f64, u64)]) -> Verdict {
    let mut v = Verdict {
        warmup_end: plan.seconds as f64 * plan.warmup_pct as f64 / 100.0,
        ..Verdict::default()
    };
    let post: Vec<(f64, u64)> = samples
        .iter()
        .copied()
        .filter(|&(t, _)| t >= v.warmup_end)
        .collect();
    if post.len() < 5 {
        v.failure = Some(format!(
            "RSS: only {} samples after the warm-up",
            post.len()
        ));
        return v;
    }
    let mut first: Vec<u64> = post[..5].iter().map(|s| s.1).collect();
    first.sort_unstable();
    v.baseline = first[2];
    v.min = post.iter().map(|s| s.1).min().unwrap_or(0);
    v.max = post.iter().map(|s| s.1).max().unwrap_or(0);
    v.end = post[post.len() - 1].1;
    v.judged = post.len();
    let b = v.baseline as f64;
    v.low_pct = (v.min as f64 - b) / b * 100.0;
    v.high_pct = (v.max as f64 - b) / b * 100.0;
    let n = post.len() as f64;
    let (mt, mk) = (
        post.iter().map(|s| s.0).sum::<f64>() / n,
        post.iter().map(|s| s.1 as f64).sum::<f64>() / n,
    );
    let cov: f64 = post.iter().map(|s| (s.0 - mt) * (s.1 as f64 - mk)).sum();
    let var: f64 = post.iter().map(|s| (s.0 - mt).powi(2)).sum();
    v.slope_kib_per_min = if var > 0.0 { cov / var * 60.0 } else { 0.0 };
    let tol = plan.rss_tolerance_pct as f64;
    if v.low_pct < -tol || v.high_pct > tol {
        v.failure = Some(format!(
            "RSS not flat: after the warm-up it ranged {} .. {} KiB against a baseline of {} \
             KiB ({:+.1} % .. {:+.1} %, allowed ±{tol} %)",
            v.min, v.max, v.baseline, v.low_pct, v.high_pct
        ));
    }
    v
}

pub fn print(out: &mut String, ctx: &Ctx, samples: &[(f64, u64)], v: &Verdict, after: Option<u64>) {
    let first = samples.first().map_or(0, |s| s.1);
    let _ = writeln!(
        out,
        "RSS (VmRSS, KiB): at start {first}; after the {:.0} s warm-up: baseline {}, min {}, \
         max {}, end {} ({} samples; {:+.1} % .. {:+.1} % of the baseline, allowed ±{} %; \
         trend {:+.1} KiB/min); after the wind-down {}",
        v.warmup_end,
        v.baseline,
        v.min,
        v.max,
        v.end,
        v.judged,
        v.low_pct,
        v.high_pct,
        ctx.plan.rss_tolerance_pct,
        v.slope_kib_per_min,
        after.map_or("?".into(), |k| k.to_string()),
    );
    // Ten points across the run, for the record.
    if !samples.is_empty() {
        let points: Vec<String> = (0..=10)
            .map(|i| {
                let idx = ((samples.len() - 1) * i / 10).min(samples.len() - 1);
                format!("{:.0}s:{}", samples[idx].0, samples[idx].1)
            })
            .collect();
        let _ = writeln!(out, "RSS timeline: {}", points.join(" "));
    }
    let _ = writeln!(
        out,
        "RSS verdict: {}",
        match &v.failure {
            None => "flat".to_string(),
            Some(e) => e.clone(),
        }
    );
}
