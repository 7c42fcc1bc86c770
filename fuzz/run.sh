#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each, one after the other (see FUZZING.md).
#   fuzz/run.sh 600                 # every target, 10 minutes each
#   fuzz/run.sh 120 msgpack_len     # some targets
# New inputs go to target/fuzz-corpus/<target> (the committed seeds in fuzz/corpus/<target>
# are read, not written); crashes go to fuzz/artifacts/<target>/. Uses the stable toolchain
# through RUSTC_BOOTSTRAP=1; `cargo install cargo-fuzz` first.
set -euo pipefail
secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
cd "$(dirname "$0")/.."
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(http_stream rpc_stream msgpack_len api_json gossip_datagram agent_ops key_query snapshot_file)
fi
status=0
for t in "${targets[@]}"; do
  mkdir -p "target/fuzz-corpus/$t"
  echo "== $t: ${secs}s" >&2
  if ! RUSTC_BOOTSTRAP=1 cargo fuzz run --debug-assertions "$t" \
      "target/fuzz-corpus/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -print_final_stats=1; then
    echo "== $t: FAILED (see fuzz/artifacts/$t/)" >&2
    status=1
  fi
done
exit $status
