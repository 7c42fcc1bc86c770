//! cargo-fuzz target `msgpack_len`; see `tandem_fuzz::msgpack_len` for the input format and the checks.
//! Without `--cfg fuzzing` (a plain cargo build) it replays the files given as arguments.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tandem_fuzz::msgpack_len(data));

#[cfg(not(fuzzing))]
fn main() {
    tandem_fuzz::replay_main("msgpack_len");
}
