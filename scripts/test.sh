#!/usr/bin/env bash
# `make test`: every test of the repository, in one run. Each step runs even when an earlier one failed, so one
# run shows everything that is wrong; the last line counts the steps (`N passed, M failed`) and the exit code is
# non-zero when any failed. Dependencies are installed by `make deps` (scripts/install-deps.sh) beforehand.
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

passed=0
failed=0
failures=()
step() {
  local name=$1
  shift
  echo
  echo "=== $name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "--- $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "--- $name: FAILED ($((SECONDS - start)) s)"
  fi
}

step "rustfmt" bash -c 'cargo fmt --all -- --check && cargo fmt --manifest-path fuzz/Cargo.toml -- --check'
step "clippy" cargo clippy --workspace --all-targets -- -D warnings
# Cross-service tests start the other services' binaries from target/debug.
step "build binaries" cargo build --workspace --bins
step "cargo test" cargo test --workspace --no-fail-fast
# The fuzz targets (fuzz/, libFuzzer on stable Rust), each FUZZ_TEST_SECONDS from its seeds and what earlier runs
# found: a crash or a failed property fails the step. `make fuzz` runs them longer.
step "fuzz targets (${FUZZ_TEST_SECONDS:-20} s each)" bash -c 'fuzz/run.sh build && fuzz/run.sh run "${FUZZ_TEST_SECONDS:-20}"'
# schemathesis against graph-api's /openapi.json with scoped tokens (no 5xx), and every write route refused
# without the write scope with nothing written.
step "security: schemathesis and write scopes" python3 tests/security/api_attack.py
step "MCP: Python SDK (HTTP, stdio, nginx) and Inspector CLI" python3 tests/mcp/mcp_test.py
if [ -f frontend/package.json ]; then
  step "frontend unit tests" bash -c 'cd frontend && npm test'
fi
if [ -f tests/deploy/validate.sh ]; then
  step "deploy checks" bash tests/deploy/validate.sh
fi
if [ -f tests/containers/run.sh ]; then
  step "containers" bash tests/containers/run.sh
fi
if [ -f tests/e2e/package.json ]; then
  step "browser end-to-end tests" bash -c 'cd tests/e2e && STACK_BIN_DIR="$PWD/../../target/debug" npm test'
fi

echo
[ ${#failures[@]} -eq 0 ] || echo "failed steps: ${failures[*]}"
echo "steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
