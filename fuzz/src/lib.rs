//! Fuzzing support for tandem-core. The cargo-fuzz targets (`fuzz_targets/`) and their seed
//! corpora arrive with the hardening work; this crate is a workspace member but not a
//! default member, so `cargo test` stays fast.
