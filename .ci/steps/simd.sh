#!/usr/bin/env bash
# CI step "simd" (issue 4): the SIMD batched kernels on the AVX-512 lane types.
#  1. the batched-vs-scalar and vector-math tests with RUSTFLAGS="-C target-cpu=native", which
#     switches SimdReal to f32x16/f64x8 when the CPU has AVX-512 (the default-build run, with
#     f32x8/f64x4, is part of the final `cargo test --release --all-features`), parallel included;
#     then the exhaustive test of the rational tanh (ignored in the default run);
#  2. a smoke run of the bench_planar example (small N, one repetition: checks it runs and prints
#     one JSON line per kernel, not a measurement).
# Bounded: about 4 minutes on 2 cores (one extra build of the test binary, one check build).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/simd-native"
# `--lib` adds the kernels' unit tests (`simd::batch::tests`: every shape `fwd_shape` picks for
# this target has its dispatch arm; the shapes depend on the target's features).
RUSTFLAGS="-C target-cpu=native" cargo test --release --features parallel --lib --test tests batch::
# simd::math::tanh_det_near's tanh over every f32 input in f32x16 and f32x8 (about a minute):
# the forward kernels' rational tanh on x86-64 FMA builds, whose bound (4 ulp) is exhaustive.
RUSTFLAGS="-C target-cpu=native" cargo test --release --features parallel --test tests \
  math_tanh_det_near_exhaustive -- --ignored --nocapture
# The f32x16 / f64x8 reciprocal estimates of SimdLane::quot_small (two of the crate's unsafe blocks) are
# compiled only for Intel cores with AVX-512 FP16 (and SimdLane::clamp_sq's vrangeps only with
# AVX-512 DQ): lint them whatever the CI host is (a check build, nothing runs; the tests above
# run them where the host has the features; on hosts without AVX-512, avx512_emulated.sh runs
# both under Bochs, the estimates in a skylake-avx512 build with avx512fp16 added, since Bochs
# has no AVX-512 FP16 model and the estimates are AVX-512 F instructions; on hosts with
# AVX-512 but without FP16 it runs that build's tests natively). `--target` keeps the
# RUSTFLAGS off the build scripts, which run here: built for Sapphire Rapids they die of SIGILL
# on a host without AVX-512 (the first CI run on a Zen 3 host, 2026-12-04).
host=$(rustc -vV | sed -n 's/^host: //p')
case "$host" in
  x86_64-*)
    CARGO_TARGET_DIR="$CARGO_TARGET_DIR-spr" RUSTFLAGS="-C target-cpu=sapphirerapids" \
      cargo clippy --lib --features parallel --target "$host" -- -D warnings
    ;;
  *) echo "host $host is not x86_64: the AVX-512 lint build is skipped" ;;
esac
out=$(RUSTFLAGS="-C target-cpu=native" cargo run --release --quiet --example bench_planar -- --d 3 --k 8 --n 1000 --dtype f64 --reps 1)
echo "$out"
lines=$(echo "$out" | grep -c '"ns_per_point_layer"')
[ "$lines" -ge 12 ] || { echo "bench_planar printed $lines JSON lines, expected >= 12" >&2; exit 1; }
