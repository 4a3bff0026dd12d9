#!/usr/bin/env bash
# Builds and runs the fuzz targets of fuzz/ (cargo-fuzz + libFuzzer) on this machine's stable Rust.
#
#   fuzz/run.sh build                 build every target (fuzz/target, git-ignored)
#   fuzz/run.sh run SECONDS [TARGET…] run each target (all by default) for SECONDS, one after the other
#   fuzz/run.sh list                  the targets
#
# `make test` builds and runs each target for FUZZ_SECONDS (20 s); `make fuzz` runs longer (FUZZ_SECONDS, 300 s).
# A run starts from the hand-written seeds in fuzz/corpus/<target>/ (read only: they are committed) plus what earlier
# runs found (fuzz/work/<target>/, git-ignored), so a crash found once is tried first next time. A crash (a panic,
# a failed property, a timeout of 10 s, an allocation over 2 GiB) fails the run; the input is saved as
# fuzz/artifacts/<target>/crash-… and `fuzz/run.sh run` prints how to replay it. Each crash fixed becomes a regression
# test beside the code and a seed in fuzz/corpus/<target>/.
#
# cargo-fuzz passes nightly-only flags to rustc (the coverage instrumentation, `--cfg fuzzing`); RUSTC_BOOTSTRAP=1
# lets the stable compiler take them, as no nightly toolchain can be fetched here. No sanitizer: the code under test
# is safe Rust, where AddressSanitizer finds nothing a panic would not, and it doubles the build and run time.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# Release code with debug assertions and overflow checks; 16 codegen units build about twice as fast as one on two
# cores for a small loss of speed in the run.
BUILD_FLAGS=(-O -a --sanitizer none --codegen-units 16 --target-dir target)
BIN_DIR=target/x86_64-unknown-linux-gnu/release

targets() {
  sed -n 's/^name = "\([a-z_]*\)"$/\1/p' Cargo.toml | grep -v '^codegraph-fuzz$'
}

build() {
  command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: run make deps" >&2; return 1; }
  # The targets build against the main workspace's dependency versions: start from its lock file.
  if [ ! -f Cargo.lock ] || [ ../Cargo.lock -nt Cargo.lock ]; then
    cp ../Cargo.lock Cargo.lock
  fi
  cargo fuzz build "${BUILD_FLAGS[@]}"
}

run() {
  local seconds=$1
  shift
  local names=("$@")
  [ ${#names[@]} -gt 0 ] || mapfile -t names < <(targets)
  local failed=()
  for t in "${names[@]}"; do
    [ -x "$BIN_DIR/$t" ] || { echo "$t is not built: fuzz/run.sh build" >&2; return 1; }
    mkdir -p "work/$t" "artifacts/$t"
    local log="work/$t.log"
    local start=$SECONDS
    if "$BIN_DIR/$t" "work/$t" "corpus/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
      local runs cov
      runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
      cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
      echo "$t: ok, ${runs:-?} inputs in $((SECONDS - start)) s, ${cov:-cov: ?} edges, corpus $(find "work/$t" -type f | wc -l) + $(find "corpus/$t" -type f | wc -l) seeds"
    else
      failed+=("$t")
      echo "$t: FAILED after $((SECONDS - start)) s (log: fuzz/$log):"
      # The panic and the input, without the backtrace's frames inside libFuzzer.
      grep -A12 -m1 'panicked at' "$log" || grep -v '^#[0-9]' "$log" | tail -20
      grep -E '^(SUMMARY|MS:|artifact_prefix|Base64)' "$log" | cut -c1-400
      local artifact
      artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
      [ -z "$artifact" ] || echo "replay: fuzz/$BIN_DIR/$t fuzz/$artifact"
    fi
  done
  [ ${#failed[@]} -eq 0 ] || { echo "fuzz targets failed: ${failed[*]}"; return 1; }
}

case ${1:-} in
  build) build ;;
  run)
    [ $# -ge 2 ] || { echo "usage: fuzz/run.sh run SECONDS [TARGET...]" >&2; exit 2; }
    shift
    run "$@"
    ;;
  list) targets ;;
  *)
    echo "usage: fuzz/run.sh build | run SECONDS [TARGET...] | list" >&2
    exit 2
    ;;
esac
