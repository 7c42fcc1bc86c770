#!/usr/bin/env bash
# Line coverage of what the fuzz corpora reach (see FUZZING.md, "Reach").
#   fuzz/coverage.sh agent_ops http_stream     # report for those targets
#   fuzz/coverage.sh                           # every target
# Builds the replay binaries (plain cargo build, no libFuzzer) with `-C instrument-coverage`
# into target/cov, runs each over its committed seeds (fuzz/corpus/T) and what campaigns
# found (target/fuzz-corpus/T, when present), and writes per target:
#   target/cov/T.profdata   merged profile
#   target/cov/T.txt        `llvm-cov show` of core/src, every line with its hit count
#   target/cov/T.report     `llvm-cov report` per file of core/src
# llvm-profdata/llvm-cov must match rustc's LLVM major version; installs llvm-N with apt
# when it is missing (Debian packages it).
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(http_stream rpc_stream msgpack_len api_json gossip_datagram agent_ops key_query)
fi
major=$(rustc --version --verbose | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
bin=/usr/lib/llvm-$major/bin
if [ ! -x "$bin/llvm-profdata" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "llvm-$major" >/dev/null
fi
out="$PWD/target/cov"
# Build scripts and proc macros are instrumented too: their profiles go aside.
RUSTFLAGS="-C instrument-coverage" CARGO_TARGET_DIR=$out LLVM_PROFILE_FILE="$out/build/%p-%m.profraw" \
  cargo build --release -p tandem-fuzz --bins >&2
for t in "${targets[@]}"; do
  rm -rf "$out/prof/$t" && mkdir -p "$out/prof/$t"
  dirs=("fuzz/corpus/$t")
  [ -d "target/fuzz-corpus/$t" ] && dirs+=("target/fuzz-corpus/$t")
  LLVM_PROFILE_FILE="$out/prof/$t/%p-%m.profraw" "$out/release/$t" "${dirs[@]}" >&2
  "$bin/llvm-profdata" merge -sparse "$out/prof/$t"/*.profraw -o "$out/$t.profdata"
  "$bin/llvm-cov" show "$out/release/$t" -instr-profile="$out/$t.profdata" \
    core/src >"$out/$t.txt"
  "$bin/llvm-cov" report "$out/release/$t" -instr-profile="$out/$t.profdata" \
    core/src >"$out/$t.report"
  echo "== $t: $(tail -1 "$out/$t.report" | awk '{print "regions", $4, "functions", $7, "lines", $10}')"
done
