//! cargo-fuzz target `api_json`; see `tandem_fuzz::api_json` for the input format and the checks.
//! Without `--cfg fuzzing` (a plain cargo build) it replays the files given as arguments.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tandem_fuzz::api_json(data));

#[cfg(not(fuzzing))]
fn main() {
    tandem_fuzz::replay_main("api_json");
}
