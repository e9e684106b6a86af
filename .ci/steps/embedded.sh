#!/usr/bin/env bash
# CI step "embedded": no_std proof and embedded footprint (issue 6).
#  1. builds the library in every feature combination (features read from Cargo.toml);
#  2. cross-builds it with --no-default-features for thumbv7em-none-eabihf and
#     riscv32imac-unknown-none-elf (targets with no std library at all);
#     and links embedded/mcu (the README's MCU usage) for both, printing .text sizes;
#  3. checks that the no_std build links no `std` symbols (nm over the rlibs of the build and
#     over the linked freestanding program);
#  4. builds and runs the freestanding program embedded/ (exit 0 = results match the f64
#     references) and embedded/measure.sh (all configurations, JSON lines).
# Self-installing (rustup target add), bounded: about 2–4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
export CARGO_TERM_COLOR=never
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

echo "-- embedded: feature combinations"
# Feature names of [features] in Cargo.toml, except `default`.
mapfile -t feats < <(awk '
  /^\[/ { in_f = ($0 ~ /^\[features\][[:space:]]*$/); next }
  in_f && /^[A-Za-z0-9_-]+[[:space:]]*=/ { sub(/[[:space:]]*=.*/, ""); if ($0 != "default") print }
' Cargo.toml)
echo "features: ${feats[*]:-(none)}"
n=${#feats[@]}
combos=()
if [ "$n" -le 3 ]; then
  # Every subset, each with --no-default-features (the empty subset is the no_std build).
  for ((mask = 0; mask < (1 << n); mask++)); do
    c=""
    for ((i = 0; i < n; i++)); do
      if (((mask >> i) & 1)); then c="${c:+$c,}${feats[$i]}"; fi
    done
    combos+=("$c")
  done
else
  # Too many for the power set within the time budget: none, each alone, all.
  combos+=("")
  for f in "${feats[@]}"; do combos+=("$f"); done
  combos+=("$(IFS=,; echo "${feats[*]}")")
fi
cargo build -q --lib
echo "ok: default"
for c in "${combos[@]}"; do
  cargo build -q --lib --no-default-features ${c:+--features "$c"}
  echo "ok: --no-default-features${c:+ --features $c}"
done

echo "-- embedded: cross builds (no std library exists for these targets)"
for t in thumbv7em-none-eabihf riscv32imac-unknown-none-elf; do
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$t"; then
    rustup target add "$t"
  fi
  cargo build -q --lib --release --no-default-features --target "$t"
  echo "ok: $t"
done

echo "-- embedded: bare-metal program for the MCU targets (monomorphised flow, linked; not run)"
# A library build compiles no generic code; embedded/mcu instantiates a K = 8, D = 2 f32 flow
# (forward, inverse, log_prob both ways; +sampler; +batched SIMD) and links it for each target.
for t in thumbv7em-none-eabihf riscv32imac-unknown-none-elf; do
  for f in "" sample simd; do
    (cd embedded/mcu && cargo build -q --release --target "$t" ${f:+--features "$f"})
    b="$CARGO_TARGET_DIR/$t/release/flowcore-mcu"
    if [ "$(nm -C "$b" | grep -cE '(^|[^A-Za-z0-9_])std::' || true)" != 0 ]; then
      echo "std symbols in $b"; exit 1
    fi
    printf '{"target": "%s", "features": "%s", "opt": "s", "text_bytes": %s}\n' "$t" "$f" \
      "$(size -A "$b" | awk '$1 == ".text" { print $2 }')"
  done
done

echo "-- embedded: no std symbols in the no_std build"
# The rlibs of the --no-default-features build (flowcore and all its dependencies), by name
# from cargo's own artifact list; only those built for the target (build-script helpers such
# as autocfg run on the host and legitimately use std).
t=thumbv7em-none-eabihf
rlibs=$(cargo build --lib --release --no-default-features --target "$t" --message-format=json 2>/dev/null |
        grep -o '"filenames":\[[^]]*\]' | grep -o '[^"]*\.rlib' | grep "/$t/" || true)
[ -n "$rlibs" ] || { echo "no rlibs found"; exit 1; }
bad=0
for r in $rlibs; do
  hits=$(nm -C "$r" 2>/dev/null | grep -cE '(^|[^A-Za-z0-9_])std::' || true)
  if [ "$hits" != 0 ]; then
    echo "std symbols in $(basename "$r"):"
    nm -C "$r" 2>/dev/null | grep -E '(^|[^A-Za-z0-9_])std::' | sed -n 1,5p
    bad=1
  fi
done
[ "$bad" = 0 ] || exit 1
echo "ok: no std:: symbols in the $(wc -w <<<"$rlibs") rlibs of the $t build: $(for r in $rlibs; do basename "$r" | sed 's/-[0-9a-f]*\.rlib$//'; done | tr '\n' ' ')"

echo "-- embedded: fmt and clippy of the embedded crates (not in the root workspace)"
rustfmt --edition 2024 --check embedded/build.rs embedded/src/main.rs embedded/mcu/src/main.rs
(cd embedded && cargo clippy -q --release --features simd -- -D warnings &&
  cargo clippy -q --release --features f64,footprint -- -D warnings)
(cd embedded/mcu && cargo clippy -q --release --target thumbv7em-none-eabihf --features sample,simd -- -D warnings)

echo "-- embedded: the freestanding program (no std, no libc, own _start)"
(cd embedded && cargo build -q --release)
bin="$CARGO_TARGET_DIR/release/flowcore-embedded"
if [ "$(nm -C "$bin" | grep -cE '(^|[^A-Za-z0-9_])std::' || true)" != 0 ]; then
  echo "std symbols in the freestanding program"; exit 1
fi
if readelf -d "$bin" 2>/dev/null | grep -q NEEDED || readelf -l "$bin" | grep -q INTERP; then
  echo "the freestanding program is dynamically linked"; exit 1
fi
"$bin"
echo "ok: freestanding program passed its checks (static, no interpreter, no std symbols)"
embedded/measure.sh
