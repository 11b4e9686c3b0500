#!/usr/bin/env bash
# The learnability ladder (issue 15): tiers 1, 2, 3 at one budget, evaluated against predict-the-mean.
#   bash research/scripts/ladder.sh            (after the three `datagen generate` runs below)
# Data (one note, MIDI 60, 3000 presets per tier, ~9 min per tier on 2 cores):
#   python -m datagen generate --tier N -n 3000 -o data/ladder/tierN.h5 --workers 2 --notes 60 --seed N
# Resumable: a finished step is skipped; training resumes from latest.pt.
# DATA=_v2 reads data/ladder/tierN_v2.h5 (e.g. made with --sampler-version 2) and names its runs tierN_v2.
# Before sampler version 2 existed the data was version 1 (`--sampler-version 1`).
set -euo pipefail
EPOCHS=${EPOCHS:-12}
LR=${LR:-1e-3}
for N in ${TIERS:-1 2 3}; do
  src=data/ladder/tier$N${DATA:-}.h5 dst=data/ladder/tier$N${DATA:-}_64.h5 run=runs/ladder/tier$N${DATA:-}${VARIANT:-}
  out=research/bench/ladder/tier$N${DATA:-}${VARIANT:-}
  [ -f "$dst.done" ] || { rm -f "$dst"; python -m datagen precompute-mels "$src" --n-mels 64 --hop-length 1024 -o "$dst" --quiet && touch "$dst.done"; }
  [ -f "$run/done" ] || { python -m training train -d "$dst" -o "$run" --epochs "$EPOCHS" --lr "$LR" --batch-size 32 \
      --num-workers 1 --seed 0 --resume ${TRAIN_ARGS:-} && touch "$run/done"; }
  [ -f "$out/report.json" ] || python -m training evaluate -c "$run/best.pt" -d "$dst" --split test -o "$out" --n-render 16
done
