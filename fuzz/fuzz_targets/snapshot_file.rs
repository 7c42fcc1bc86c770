//! cargo-fuzz target `snapshot_file`; see `tandem_fuzz::snapshot_file` for the input format and the checks.
//! Without `--cfg fuzzing` (a plain cargo build) it replays the files given as arguments.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tandem_fuzz::snapshot_file(data));

#[cfg(not(fuzzing))]
fn main() {
    tandem_fuzz::replay_main("snapshot_file");
}
