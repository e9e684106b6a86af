#!/usr/bin/env bash
# Same-run comparison of a reverse-KL training step (U1, D = 2, K = 32) between flowcore's
# `bench_train` and the peer script's jax-jit and torch-normflows backends
# (../shared/peers/bench_planar.py), batch 1024 and 8192, f32/f64, 1 and 2 threads, default
# and `-C target-cpu=native` builds; prints a markdown table with ratios.
#
#   benches/compare_train_peers.sh            # run everything (≈ 3 min of CPU + builds)
#   PEERS_VENV=/path/to/venv benches/compare_train_peers.sh
#
# The peer script runs only if its venv exists (default /work/peers-venv; set it up as
# ../shared/peers/README.md says, outside the repository); otherwise the stored
# ../shared/peers/results-*-run2.jsonl (or the newest results-*.jsonl) is read and the table
# says so. Raw outputs go to $OUT (default target/compare_train_peers/).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
peers="$root/../shared/peers"
venv=${PEERS_VENV:-/work/peers-venv}
out=${OUT:-$root/target/compare_train_peers}
mkdir -p "$out"
tgt=${CARGO_TARGET_DIR:-$root/target}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out/load.txt"
if [ -x "$venv/bin/python" ]; then
    echo "peer script: running (venv $venv)" | tee "$out/peer_source.txt"
    "$venv/bin/python" "$peers/bench_planar.py" --quick --groups jax,torch --threads 1,2 \
        > "$out/peers.jsonl"
    peer_file="$out/peers.jsonl"
else
    peer_file=$(ls "$peers"/results-*-run2.jsonl 2>/dev/null | tail -1 || true)
    [ -n "$peer_file" ] || peer_file=$(ls -t "$peers"/results-*.jsonl | grep -v quality | head -1)
    echo "peer script: venv $venv missing, stored figures from $peer_file" | tee "$out/peer_source.txt"
fi
echo "load after peers: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/load.txt"

run_crate() { # $1 = build label, $2 = target dir, $3 = RUSTFLAGS
    RUSTFLAGS="$3" CARGO_TARGET_DIR="$2" cargo build -q --release --features parallel \
        --example bench_train
    for b in 1024 8192; do
        for d in f32 f64; do
            for t in 1 2; do
                # threads=1 pinned to CPU 0, as the peer script pins its threads=1 runs.
                pin=()
                if [ "$t" = 1 ] && command -v taskset > /dev/null; then pin=(taskset -c 0); fi
                "${pin[@]}" "$2/release/examples/bench_train" --batch "$b" --k 32 --dtype "$d" --threads "$t" |
                    sed "s/^{/{\"build\": \"$1\", /"
            done
        done
    done
}
run_crate default "$tgt" "" > "$out/crate.jsonl"
run_crate native "$tgt-native" "-C target-cpu=native" >> "$out/crate.jsonl"
echo "load after crate: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/load.txt"

python3 - "$out/crate.jsonl" "$peer_file" <<'PY'
import json, sys
crate = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
peer = {}
for l in open(sys.argv[2]):
    d = json.loads(l)
    if d.get("bench") == "train" and d.get("backend") in ("jax-jit", "torch-normflows"):
        peer[(d["backend"], d["dtype"], d["batch"], d["threads"])] = d["s_per_step"] * 1e3
print("| build | dtype | batch | threads | flowcore ms | jax-jit ms | × vs jax-jit | normflows ms | × vs normflows |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for c in crate:
    dt = {"f32": "float32", "f64": "float64"}[c["dtype"]]
    j = peer.get(("jax-jit", dt, c["batch"], c["threads"]))
    n = peer.get(("torch-normflows", dt, c["batch"], c["threads"]))
    ms = c["ms_per_step"]
    f = lambda v: "–" if v is None else f"{v:.3f}"
    r = lambda v: "–" if v is None else f"{v / ms:.1f}"
    print(f"| {c['build']} | {c['dtype']} | {c['batch']} | {c['threads']} | {ms:.3f} | {f(j)} | {r(j)} | {f(n)} | {r(n)} |")
print()
print("jax-jit is float32 only; ratios = peer ms / flowcore ms (higher: flowcore faster).")
PY
