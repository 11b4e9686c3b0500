#!/usr/bin/env bash
# Trainer throughput, before and after a change, measured in one run (research/benchmarks.md, "Training
# throughput"): the trainer of BASE (a git revision, checked out into a temporary worktree) and of the work
# tree take turns on the same data, REPEATS times each; samples/s is the mean of epochs 1.. of each run's
# log.jsonl (epoch 0 warms up).
#   bash research/scripts/train_speed.sh BASE DATA.h5 [REPEATS]
# e.g. bash research/scripts/train_speed.sh 3857a8e data/tp/perturbed.h5 2
set -euo pipefail
base=${1:?give a base revision}; data=$(realpath "${2:?give a data set}"); repeats=${3:-2}
epochs=${EPOCHS:-3}; python=${PYTHON:-python}
tmp=$(mktemp -d); trap 'git worktree remove --force "$tmp/base" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add --detach "$tmp/base" "$base" >/dev/null 2>&1
here=$(pwd)

run() {  # run LABEL TREE ARGS...: one training run; prints LABEL, samples/s, data wait
  local label=$1 tree=$2; shift 2
  local out="$tmp/run_${label}_$RANDOM"
  (cd "$tree" && PYTHONPATH="$tree" "$python" -m training train -d "$data" -o "$out" --epochs "$epochs" \
     --lr 1e-3 --num-workers 1 --seed 0 "$@" >/dev/null 2>&1)
  "$python" - "$label" "$out/log.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[2])][1:]
sps = sum(r["samples_per_s"] for r in rows) / len(rows)
wait = sum(r["data_wait_share"] for r in rows) / len(rows)
print(f"{sys.argv[1]:14s} {sps:6.1f} samples/s  data wait {100 * wait:4.1f}%  val loss {rows[-1]['val/loss']:.4f}", flush=True)
PY
}

for r in $(seq "$repeats"); do
  run base_b32 "$tmp/base" --batch-size 32
  run new_b32 "$here" --batch-size 32
  run new_b64 "$here" --batch-size 64
  run new_b64_bf16 "$here" --batch-size 64 --precision bf16
done
