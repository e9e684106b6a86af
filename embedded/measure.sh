#!/usr/bin/env bash
# Builds and runs the freestanding flowcore program in each configuration and prints one JSON
# line per configuration:
#   {"dtype": "f32", "path": "scalar", "opt": "3", "text_bytes": N, "stack_bytes": N, "ok": true, ...}
# text_bytes : .text of the `footprint` build (the flow's operations + _start/syscalls only,
#              no f64 reference and no checks): what the flow costs a user.
# stack_bytes: peak stack of one single-point operation (scalar path: max over forward+log-det,
#              inverse+log-det, log_prob, log_prob_normalizing) or of the batched call (simd
#              path), measured by stack painting inside the checked program.
# ok         : the checked program's own verdict (exit 0 and "ok=1").
# Extra keys: text_bytes_checked (.text of the checked program, f64 reference included),
# program_stack_bytes (whole-program peak of the checked program), worst_err_over_tol.
# Usage: embedded/measure.sh   (x86_64 Linux host; uses $CARGO_TARGET_DIR if set)
set -uo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TARGET_DIR="$target_dir"
status=0

text_size() { size -A "$1" | awk '$1 == ".text" { print $2 }'; }

for dtype in f32 f64; do
  for path in scalar simd; do
    for opt in 3 s; do
      feats=()
      [ "$dtype" = f64 ] && feats+=(f64)
      [ "$path" = simd ] && feats+=(simd)
      profile=release
      [ "$opt" = s ] && profile=release-s
      bin="$target_dir/$profile/flowcore-embedded"
      base=$(printf '"dtype": "%s", "path": "%s", "opt": "%s"' "$dtype" "$path" "$opt")
      fp=$(IFS=,; echo "${feats[*]+${feats[*]}}")
      if ! cargo build -q --profile "$profile" --features "footprint${fp:+,$fp}" 2>/tmp/embedded-build.$$; then
        printf '{%s, "text_bytes": null, "stack_bytes": null, "ok": false, "error": "footprint build failed"}\n' "$base"
        sed 's/^/  # /' /tmp/embedded-build.$$ | head -5 >&2
        status=1; continue
      fi
      "$bin" >/dev/null || { printf '{%s, "text_bytes": null, "stack_bytes": null, "ok": false, "error": "footprint run failed"}\n' "$base"; status=1; continue; }
      text=$(text_size "$bin")
      if ! cargo build -q --profile "$profile" ${fp:+--features "$fp"} 2>/tmp/embedded-build.$$; then
        printf '{%s, "text_bytes": %s, "stack_bytes": null, "ok": false, "error": "checked build failed"}\n' "$base" "$text"
        sed 's/^/  # /' /tmp/embedded-build.$$ | head -5 >&2
        status=1; continue
      fi
      text_checked=$(text_size "$bin")
      out=$("$bin" 2>/tmp/embedded-run.$$); rc=$?
      get() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" <<<"$out"; }
      ok=false; [ "$rc" = 0 ] && [ "$(get ok)" = 1 ] && ok=true
      if [ "$path" = simd ]; then stack=$(get stack_batch); else stack=$(get stack_single); fi
      worst=$(get worst_err_over_tol_milli)
      printf '{%s, "text_bytes": %s, "stack_bytes": %s, "ok": %s, "text_bytes_checked": %s, "program_stack_bytes": %s, "worst_err_over_tol": %s}\n' \
        "$base" "$text" "${stack:-null}" "$ok" "$text_checked" "$(get stack_program || true)" \
        "$(awk -v m="${worst:-0}" 'BEGIN { printf "%.3f", m / 1000 }')"
      if [ "$ok" != true ]; then
        status=1
        sed 's/^/  # /' /tmp/embedded-run.$$ >&2
      fi
    done
  done
done
rm -f /tmp/embedded-build.$$ /tmp/embedded-run.$$
exit $status
