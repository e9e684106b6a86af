#!/usr/bin/env bash
# CI step "msrv": the crate builds with the Rust version Cargo.toml declares (`rust-version`,
# set by `wide` 1.7).
#  1. installs that toolchain (rustup, minimal profile) if it is missing;
#  2. type-checks the library without default features (the no_std build) and with all
#     features, the same with the x86-64 SIMD paths of AVX2 (znver3), AVX-512 (znver4; znver5,
#     with its own chunk shapes, `AMD_ZEN5`) and AVX-512 FP16 (sapphirerapids: the reciprocal
#     estimates, compiled only there) switched on, and every target (tests, benches, examples)
#     with all features.
# Self-installing, bounded: about 2–3 minutes on 2 cores (`cargo check`, no code generation).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export CARGO_TERM_COLOR=never

msrv=$(awk -F'"' '/^rust-version[[:space:]]*=/ { print $2; exit }' Cargo.toml)
if [ -z "$msrv" ]; then
  echo "msrv: no rust-version in Cargo.toml" >&2
  exit 1
fi
echo "-- msrv: Rust $msrv"
if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$msrv" --profile minimal
fi
rustup run "$msrv" rustc --version

# A target directory of its own: the toolchains' artifacts do not mix.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}/msrv"
host=$(rustc -vV | awk '/^host:/ { print $2 }')

cargo "+$msrv" check --lib --no-default-features
cargo "+$msrv" check --lib --all-features
# `--target` keeps RUSTFLAGS off the build scripts (they run here, whatever the CPU).
for cpu in znver3 znver4 znver5 sapphirerapids; do
  echo "-- msrv: target-cpu=$cpu"
  RUSTFLAGS="-C target-cpu=$cpu" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/$cpu" \
    cargo "+$msrv" check --lib --all-features --target "$host"
done
cargo "+$msrv" check --all-targets --all-features
echo "-- msrv: ok"
