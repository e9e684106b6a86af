#!/usr/bin/env bash
# CI step `fuzz`: builds every cargo-fuzz target (nightly) and runs each for a bounded time from
# the checked-in seed corpus; any finding (a failed property, panic, timeout or OOM) fails CI.
# Budget: cargo-fuzz install ~30 s (once), build ~3-6 min on 2 cores (peak
# memory under 8 GB), 8 targets x 25 s.
set -euo pipefail
cd "$(dirname "$0")/../../fuzz"
SECS="${FUZZ_SECS:-25}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi

targets=(roundtrip log_det density constraint no_panic batch_vs_scalar batch_dims gradients)
cargo +nightly fuzz build
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  # git keeps no empty folders: a target with no regressions yet has no regressions/ dir.
  mkdir -p "$work/$t" "corpus/$t" "regressions/$t"
  echo "-- fuzz $t for ${SECS}s"
  # New inputs go to the scratch dir; the checked-in corpus and regressions are read only.
  if ! cargo +nightly fuzz run "$t" "$work/$t" "corpus/$t" "regressions/$t" -- \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log" >&2
    echo "fuzz target $t found a failure (artifact under fuzz/artifacts/$t)" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$work/$t.log" || true
done
