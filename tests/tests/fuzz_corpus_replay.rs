//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`) through the runner the
//! fuzz target uses (`tandem_fuzz::run_target`), without libFuzzer, so `cargo test` keeps
//! every seed and every past finding passing. See FUZZING.md.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn replay(target: &'static str) {
    // The reference decoders of `msgpack_len` recurse (the agent's scanner does not); give
    // them the stack libFuzzer's main thread has, with room for debug builds.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || replay_on_this_thread(target))
        .expect("spawn replay thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

fn replay_on_this_thread(target: &str) {
    let dir = corpus(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).expect("read corpus file");
        if std::panic::catch_unwind(|| tandem_fuzz::run_target(target, &data)).is_err() {
            failed.push(f.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: failing corpus files: {failed:#?}"
    );
}

#[test]
fn http_stream() {
    replay("http_stream");
}

#[test]
fn rpc_stream() {
    replay("rpc_stream");
}

#[test]
fn peer_stream() {
    replay("peer_stream");
}

#[test]
fn msgpack_len() {
    replay("msgpack_len");
}

#[test]
fn api_json() {
    replay("api_json");
}

#[test]
fn gossip_datagram() {
    replay("gossip_datagram");
}

#[test]
fn agent_ops() {
    replay("agent_ops");
}

#[test]
fn key_query() {
    replay("key_query");
}

#[test]
fn every_target_has_a_corpus() {
    for t in tandem_fuzz::TARGETS {
        assert!(corpus(t).is_dir(), "fuzz/corpus/{t} is missing");
    }
}

/// Regenerates the real-gossip seeds: `cargo test -p tandem-tests --test
/// fuzz_corpus_replay -- --ignored write_gossip_seeds`.
#[test]
#[ignore = "writes fuzz/corpus/gossip_datagram/real-*"]
fn write_gossip_seeds() {
    let dir = corpus("gossip_datagram");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (i, seed) in tandem_fuzz::gossip_seeds().iter().enumerate() {
        std::fs::write(dir.join(format!("real-{i:02}")), seed).expect("write seed");
    }
}

#[test]
fn snapshot_file() {
    replay("snapshot_file");
}
