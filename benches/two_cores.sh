#!/usr/bin/env bash
# The issue's multi-core target: the speed-up of the `par_*` kernels (feature `parallel`) on two
# threads over one, N = 65536, K = 32, for forward+log-det, the inverse and `log_prob` (sampler
# direction), f32 / f64, D = 2 / 16. `bench_planar` runs with `--threads 1` and `--threads 2` in
# turn, R times (each run a new process and a new pool, warmed up for 200 ms; see
# examples/bench_planar.rs), so a shared host's slow and fast phases fall on both sides alike;
# each round's ratio of the medians is a same-run comparison. Prints, per kernel, the median
# of the R ratios, their range and how many reached 1.8x.
#
#   benches/two_cores.sh                 # default build, 10 rounds
#   benches/two_cores.sh --native        # RUSTFLAGS="-C target-cpu=native"
#   benches/two_cores.sh --rounds 3 --n 1048576
#
# Nothing else should run on the machine meanwhile: the two threads need both cores.
set -euo pipefail
cd "$(dirname "$0")/.."
native=0
rounds=10
n=65536
while [ $# -gt 0 ]; do
  case "$1" in
    --native) native=1 ;;
    --rounds) rounds="$2"; shift ;;
    --n) n="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case "$rounds" in '' | *[!0-9]* | 0) echo "--rounds needs a positive integer" >&2; exit 2 ;; esac
case "$n" in '' | *[!0-9]*) echo "--n needs a non-negative integer" >&2; exit 2 ;; esac
if [ "$native" = 1 ]; then
  export RUSTFLAGS="-C target-cpu=native"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/native"
fi
cargo build --release --quiet --features parallel --example bench_planar
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench_planar"
out=$(mktemp)
trap 'rm -f "$out"' EXIT

for r in $(seq 1 "$rounds"); do
  for dtype in f32 f64; do
    for d in 2 16; do
      for t in 1 2; do
        "$bin" --d "$d" --k 32 --n "$n" --dtype "$dtype" --threads "$t" --reps 15 --scalar 0 \
          --kernels forward_log_det,inverse,log_prob | sed "s/^/$r /" >> "$out"
      done
    done
  done
done

python3 - "$out" "$rounds" "$n" "$native" <<'PY'
import collections, json, statistics, sys
path, rounds, n, native = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
t = collections.defaultdict(dict)
for line in open(path):
    r, js = line.split(" ", 1)
    j = json.loads(js)
    if j["path"] != "simd":
        continue
    t[(j["dtype"], j["d"], j["kernel"], r)][j["threads"]] = j["ns_per_point_layer"]
build = "native" if native else "default"
print(f"# two threads over one, N={n}, K=32, {build} build, {rounds} alternated round(s): "
      "median of the per-round ratios [range], rounds >= 1.8x")
for dtype in ("f32", "f64"):
    for d in (2, 16):
        for k in ("forward_log_det", "inverse", "log_prob"):
            sp = [v[1] / v[2] for (a, b, c, _), v in t.items()
                  if (a, b, c) == (dtype, d, k) and 1 in v and 2 in v]
            if not sp:
                continue
            ok = sum(s >= 1.8 for s in sp)
            print(f"{dtype} D={d:<3} {k:<16} {statistics.median(sp):.2f}x "
                  f"[{min(sp):.2f}-{max(sp):.2f}]  {ok}/{len(sp)} >= 1.8x")
PY
