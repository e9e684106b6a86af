#!/usr/bin/env bash
# Runs the crate's bench_planar (forward + log-det, K = 32, N = 65536, D ∈ {2, 16}, f32/f64) and
# compares it with the Python peers of ../shared/peers (the sibling `shared/` folder of the repo):
# their bench_planar.py is run if its venv exists (quick mode), otherwise the stored
# results-*.jsonl are read. Prints one line per (dtype, D, peer): peer ns, crate ns, ratio.
#
#   benches/compare_peers.sh                 # default build (x86-64 baseline: SSE2)
#   benches/compare_peers.sh --native        # RUSTFLAGS="-C target-cpu=native" (AVX-512 here)
#   benches/compare_peers.sh --threads 2     # 2 threads (needs the parallel feature; added)
#   benches/compare_peers.sh --rounds 3      # crate and peers in turn, 3 times (see below)
#
# With --rounds R the crate and the peers run alternately R times, so that a shared host's
# slow and fast phases (its clock moves by 10-15 % from minute to minute) fall on both sides
# alike: every round's ratio is printed (each round is a same-run comparison), then the median
# of the R ratios and, for the issue's f32 targets, how many rounds reached them.
set -euo pipefail
cd "$(dirname "$0")/.."
native=0
threads=1
rounds=1
while [ $# -gt 0 ]; do
  case "$1" in
    --native) native=1 ;;
    --threads) threads="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
peers=../shared/peers
case "$rounds" in '' | *[!0-9]* | 0) echo "--rounds needs a positive integer" >&2; exit 2 ;; esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

features=()
[ "$threads" -gt 1 ] && features=(--features parallel)
if [ "$native" = 1 ]; then
  export RUSTFLAGS="-C target-cpu=native"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/native"
fi
cargo build --release --quiet "${features[@]}" --example bench_planar
bin="${CARGO_TARGET_DIR:-target}/release/examples/bench_planar"

# The peers' venv: $PEERS_VENV, else ../shared/peers/venv, else /work/peers-venv (set up as
# ../shared/peers/README.md says). Without one, the stored results-*.jsonl stand in every round.
venv=${PEERS_VENV:-$peers/venv}
[ -x "$venv/bin/python" ] || venv=/work/peers-venv
stored=()
if [ -x "$venv/bin/python" ]; then
  echo "# peers: running $peers/bench_planar.py --quick --threads $threads (venv $venv), $rounds round(s)" >&2
else
  echo "# peers: no venv in $peers, reading the stored results" >&2
  for f in "$peers"/results-2*.jsonl; do
    case "$f" in *quality*) ;; *) stored+=("$f") ;; esac
  done
fi

for r in $(seq 1 "$rounds"); do
  for dtype in f32 f64; do
    for d in 2 16; do
      "$bin" --d "$d" --k 32 --n 65536 --dtype "$dtype" --threads "$threads" \
        --kernels forward_log_det,inverse,log_prob >> "$work/crate-$r.jsonl"
    done
  done
  if [ ${#stored[@]} -eq 0 ]; then
    (cd "$peers" && "$venv/bin/python" bench_planar.py --quick --threads "$threads" --out "$work/peers-$r.jsonl" > /dev/null)
  else
    cat "${stored[@]}" > "$work/peers-$r.jsonl"
  fi
done

python3 - "$work" "$rounds" "$threads" "$native" <<'PY'
import json, statistics, sys
work, rounds, threads, native = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
crate, peers = [], []
for r in range(1, rounds + 1):
    c = {}
    for line in open(f"{work}/crate-{r}.jsonl"):
        j = json.loads(line)
        c[(j["kernel"], j["path"], j["dtype"], j["d"])] = j["ns_per_point_layer"]
    crate.append(c)
    p = {}
    for line in open(f"{work}/peers-{r}.jsonl"):
        j = json.loads(line)
        if j.get("bench") != "forward" or j.get("threads") != threads or j.get("K") != 32:
            continue
        p.setdefault((j["backend"], j["dtype"], j["D"]), []).append(j["ns_per_point_layer"])
    peers.append({k: statistics.median(v) for k, v in p.items()})
build = "native" if native else "default"
fmt = lambda xs, f: " / ".join(f.format(x) for x in xs)
print(f"# forward+log-det, K=32, N=65536, {threads} thread(s), crate build: {build}; ns per point-layer (medians)")
if rounds > 1:
    print(f"# {rounds} rounds (crate, then peers, in each): peer ns | crate ns | ratio per round | median ratio")
else:
    print(f"{'dtype':6} {'D':>3} {'peer':18} {'peer ns':>9} {'crate ns':>9} {'peer/crate':>10}")
# The issue's f32 targets (forward+log-det, one thread): >= 3x jax-jit, >= 50x normflows.
target = {("f32", "jax-jit"): 3.0, ("f32", "torch-normflows"): 50.0}
for dtype, pdt in (("f32", "float32"), ("f64", "float64")):
    for d in (2, 16):
        ours = [c.get(("forward_log_det", "simd", dtype, d)) for c in crate]
        if any(o is None for o in ours):
            continue
        for backend in sorted({k[0] for p in peers for k in p if k[1] == pdt and k[2] == d}):
            pv = [p.get((backend, pdt, d)) for p in peers]
            if any(v is None for v in pv):
                continue
            ratios = [v / o for v, o in zip(pv, ours)]
            if rounds == 1:
                print(f"{dtype:6} {d:>3} {backend:18} {pv[0]:9.3f} {ours[0]:9.3f} {ratios[0]:10.1f}")
                continue
            line = (f"{dtype:6} {d:>3} {backend:18} {fmt(pv, '{:.3f}')} | {fmt(ours, '{:.3f}')} | "
                    f"{fmt(ratios, '{:.1f}')} | median {statistics.median(ratios):.1f}")
            t = target.get((dtype, backend)) if threads == 1 else None
            if t is not None:
                line += f", >= {t:g}x in {sum(x >= t for x in ratios)}/{rounds}"
            print(line)
print()
print("# f64: against the fastest f64 peer of each round (target >= 3x, one thread)")
for d in (2, 16):
    ours = [c.get(("forward_log_det", "simd", "f64", d)) for c in crate]
    best = [min(((v, k[0]) for k, v in p.items() if k[1] == "float64" and k[2] == d), default=None) for p in peers]
    if any(o is None for o in ours) or any(b is None for b in best):
        continue
    ratios = [b[0] / o for b, o in zip(best, ours)]
    print(f"f64 D={d}: " + " / ".join(f"{r:.1f}x ({b[1]})" for r, b in zip(ratios, best))
          + (f" | median {statistics.median(ratios):.1f}, >= 3x in {sum(r >= 3 for r in ratios)}/{rounds}" if rounds > 1 else ""))
print()
print("# crate: inverse and log_prob (sampler direction) relative to forward+log-det")
for dtype in ("f32", "f64"):
    for d in (2, 16):
        for r, c in enumerate(crate, 1):
            f = c.get(("forward_log_det", "simd", dtype, d))
            i = c.get(("inverse", "simd", dtype, d))
            l = c.get(("log_prob", "simd", dtype, d))
            if f and i and l:
                tag = f" (round {r})" if rounds > 1 else ""
                print(f"{dtype} D={d}{tag}: forward+log-det {f:.3f} ns, inverse {i:.3f} ns ({i / f:.1f}x), log_prob {l:.3f} ns ({l / f:.1f}x)")
PY
