# shellcheck shell=bash
# Fuzzing (fuzz/, `make fuzz` and the short run in `make test`): cargo-fuzz from crates.io, built by this machine's
# stable toolchain. It drives libFuzzer (built from source by libfuzzer-sys with the C++ compiler) and needs
# nightly-only rustc flags, which fuzz/run.sh allows on stable with RUSTC_BOOTSTRAP=1: no nightly toolchain is
# needed, nor can one be fetched here. Sourced by scripts/install-deps.sh, which defines apt_need.
CARGO_FUZZ_VERSION=0.13.2
apt_need g++ g++
if ! cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install)"
  cargo install -q --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
