#!/usr/bin/env bash
# Runs the crate's bench_planar (forward + log-det, K = 32, N = 65536, D ∈ {2, 16}, f32/f64) and
# compares it with the Python peers of ../shared/peers (the sibling `shared/` folder of the repo):
# their bench_planar.py is run if its venv exists (quick mode), otherwise the stored
# results-*.jsonl are read. Prints one line per (dtype, D, peer): peer ns, crate ns, ratio.
#
#   benches/compare_peers.sh                 # default build (x86-64 baseline: SSE2)
#   benches/compare_peers.sh --native        # RUSTFLAGS="-C target-cpu=native" (AVX-512 here)
#   benches/compare_peers.sh --threads 2     # 2 threads (needs the parallel feature; added)
set -euo pipefail
cd "$(dirname "$0")/.."
native=0
threads=1
while [ $# -gt 0 ]; do
  case "$1" in
    --native) native=1 ;;
    --threads) threads="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
peers=../shared/peers
crate_out=$(mktemp)
peer_out=$(mktemp)
trap 'rm -f "$crate_out" "$peer_out"' EXIT

features=()
[ "$threads" -gt 1 ] && features=(--features parallel)
if [ "$native" = 1 ]; then
  export RUSTFLAGS="-C target-cpu=native"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/native"
fi
cargo build --release --quiet "${features[@]}" --example bench_planar
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench_planar"
for dtype in f32 f64; do
  for d in 2 16; do
    "$bin" --d "$d" --k 32 --n 65536 --dtype "$dtype" --threads "$threads" \
      --kernels forward_log_det,inverse,log_prob >> "$crate_out"
  done
done

# The peers' venv: $PEERS_VENV, else ../shared/peers/venv, else /work/peers-venv (set up as
# ../shared/peers/README.md says).
venv=${PEERS_VENV:-$peers/venv}
[ -x "$venv/bin/python" ] || venv=/work/peers-venv
if [ -x "$venv/bin/python" ]; then
  echo "# peers: running $peers/bench_planar.py --quick --threads $threads (venv $venv)" >&2
  (cd "$peers" && "$venv/bin/python" bench_planar.py --quick --threads "$threads" --out "$peer_out" > /dev/null)
  peer_files=("$peer_out")
else
  echo "# peers: no venv in $peers, reading the stored results" >&2
  peer_files=()
  for f in "$peers"/results-2*.jsonl; do
    case "$f" in *quality*) ;; *) peer_files+=("$f") ;; esac
  done
fi

python3 - "$crate_out" "$threads" "$native" "${peer_files[@]}" <<'PY'
import json, statistics, sys
crate_file, threads, native, peer_files = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]
crate = {}
for line in open(crate_file):
    r = json.loads(line)
    crate[(r["kernel"], r["path"], r["dtype"], r["d"])] = r["ns_per_point_layer"]
peers = {}
for f in peer_files:
    for line in open(f):
        r = json.loads(line)
        if r.get("bench") != "forward" or r.get("threads") != threads or r.get("K") != 32:
            continue
        peers.setdefault((r["backend"], r["dtype"], r["D"]), []).append(r["ns_per_point_layer"])
build = "native" if native else "default"
print(f"# forward+log-det, K=32, N=65536, {threads} thread(s), crate build: {build}; ns per point-layer (medians)")
print(f"{'dtype':6} {'D':>3} {'peer':18} {'peer ns':>9} {'crate ns':>9} {'peer/crate':>10}")
for dtype, pdt in (("f32", "float32"), ("f64", "float64")):
    for d in (2, 16):
        ours = crate.get(("forward_log_det", "simd", dtype, d))
        if ours is None:
            continue
        for (backend, pd, pD), v in sorted(peers.items()):
            if pd != pdt or pD != d:
                continue
            p = statistics.median(v)
            print(f"{dtype:6} {d:>3} {backend:18} {p:9.3f} {ours:9.3f} {p / ours:10.1f}")
print()
print("# crate: inverse and log_prob (sampler direction) relative to forward+log-det")
for dtype in ("f32", "f64"):
    for d in (2, 16):
        f = crate.get(("forward_log_det", "simd", dtype, d))
        i = crate.get(("inverse", "simd", dtype, d))
        l = crate.get(("log_prob", "simd", dtype, d))
        if f and i and l:
            print(f"{dtype} D={d}: forward+log-det {f:.3f} ns, inverse {i:.3f} ns ({i / f:.1f}x), log_prob {l:.3f} ns ({l / f:.1f}x)")
PY
