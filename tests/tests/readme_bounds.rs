//! README's table of configuration bounds is the one `Config::validate` enforces: every
//! limit and timing, with its default and accepted range, and nothing else.

use tandem_core::{Limits, Timing};

#[test]
fn the_readme_bounds_table_matches_the_code() {
    let readme = include_str!("../../README.md");
    let table: Vec<String> = readme
        .lines()
        .filter(|l| l.starts_with("| `limits.") || l.starts_with("| `timing."))
        .filter(|l| l.ends_with(" |") && l.contains(" to "))
        .map(str::to_string)
        .collect();
    let want: Vec<String> = Limits::default()
        .bounds()
        .into_iter()
        .chain(Timing::default().bounds())
        .map(|(key, default, min, max)| format!("| `{key}` | {default} | {min} to {max} |"))
        .collect();
    assert_eq!(table, want);
}
