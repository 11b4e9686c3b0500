"""One-batch overfit: can the model drive every loss part to ~0 on one fixed batch? (bug check for issue 15)

    python research/scripts/overfit.py data/ladder/tier1.h5 --rows 16 --steps 150
"""

import argparse
import time
from functools import partial

import torch

from datagen.registry import load_registry
from datagen.features import FeatureConfig
from datagen.wavetables import Catalog
from training.data import PresetDataset, collate
from training.losses import LossConfig, PresetLoss, build_mask_spec
from training.model import PresetEstimator, model_config_for


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    registry = load_registry()
    ds = PresetDataset([args.data], split="train")
    features = FeatureConfig.from_json(ds.info.feature_config)
    n_tables = len(Catalog.from_json(ds.info.wavetable_catalog)) + 1
    mc = model_config_for(registry, n_wavetables=n_tables, n_mels=features.n_mels, n_frames=features.n_frames)
    model = PresetEstimator(mc)
    loss_fn = PresetLoss(spec=build_mask_spec(registry, tier=ds.info.tier), predicted_categorical=mc.predicted_categorical,
                         importance=None, config=LossConfig(label_smoothing=0.0, modulation_warmup_epochs=0))
    batch = collate([ds[i] for i in range(args.rows)], n_sources=len(registry.sources),
                    n_destinations=len(registry.destinations))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    t0 = time.perf_counter()
    for step in range(args.steps):
        model.train()
        parts = loss_fn(model(batch["mel"], batch["midi_note"]), batch, epoch=1.0)
        opt.zero_grad()
        parts["loss"].backward()
        opt.step()
        if step % 25 == 0 or step == args.steps - 1:
            with torch.no_grad():
                model.eval()
                ev = loss_fn(model(batch["mel"], batch["midi_note"]), batch, epoch=1.0)
            print(f"step {step:4d} ({time.perf_counter() - t0:5.1f} s) train " + " ".join(
                f"{k.split('/')[-1]}={float(v):.4f}" for k, v in parts.items() if k in (
                    "loss", "loss/continuous", "loss/categorical", "loss/wavetable", "loss/modulation"))
                  + f" | eval-mode loss={float(ev['loss']):.4f} cont={float(ev['loss/continuous']):.4f}", flush=True)


if __name__ == "__main__":
    main()
