#!/usr/bin/env bash
# Training examples smoke run (bounded: a few seconds each in release): each must exit 0 and
# end with its JSON line.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --examples
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$(cargo run -q --release --example fit_energy -- --energy u1 --layers 8 --steps 300 --batch 256 --seed 1 --png "$tmp/u1.png" --export "$tmp/flow.rs" 2>/dev/null | tail -1)
echo "$out"
case "$out" in *'"kl":'*) ;; *) echo "fit_energy: no JSON line"; exit 1 ;; esac
test -s "$tmp/u1.png" && test -s "$tmp/flow.rs"
out=$(cargo run -q --release --example fit_samples -- --steps 200 --png "$tmp/m.png" 2>/dev/null | tail -1)
echo "$out"
case "$out" in *'"test_nll":'*) ;; *) echo "fit_samples: no JSON line"; exit 1 ;; esac
cargo run -q --release --example bench_train -- --batch 1024 --k 8 --dtype f32 --threads 1
