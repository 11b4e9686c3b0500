"""Does naming the base help the heads? Fine-tune the shipped model on a perturbed data set with its own loss
(`training.losses.PresetLoss`, the shipped model's importance weights and loss config) plus, with `--aux W`,
W x the cross-entropy of a linear head that names each row's main base (preset_index % the number of "build"
presets), dropped after training; then score it on another perturbed set with base_probe.py's answers.
`--aux 0` is the control: the same fine-tune without the auxiliary head.

    PYTHONPATH=. python research/scripts/base_aux.py data/diag/train3k_64.h5 data/diag/onenote_64.h5 --aux 0.5
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def train_rows(path: str) -> dict:
    import h5py

    from datagen.dataset import SPLITS

    with h5py.File(path, "r") as f:
        keep = f["split"][:] == SPLITS.index("train")
        return {k: f[k][:][keep] for k in ("mel", "continuous", "categorical", "wavetable", "modulation",
                                            "midi_note", "preset_index")}


def finetune(path: str, *, aux: float, epochs: int, lr: float, batch: int, seed: int, n_bases: int,
             augment: bool = True):
    import torch

    from datagen.registry import load_registry
    from inference.predict import default_checkpoint
    from training import checkpoint
    from training.data import collate
    from training.heads import HEADS
    from training.losses import LossConfig, PresetLoss, build_mask_spec
    from training.schedule import spec_augment

    torch.manual_seed(seed)
    registry = load_registry()
    ckpt = checkpoint.load(default_checkpoint())
    model = checkpoint.build_model(ckpt, default_checkpoint())
    loss_fn = PresetLoss(spec=build_mask_spec(registry, tier=0),
                         predicted_categorical=model.config.predicted_categorical,
                         importance=torch.tensor(ckpt["importance"]), config=LossConfig(**ckpt["loss_config"]))
    head = torch.nn.Linear(512, n_bases)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    rows = train_rows(path)
    n = len(rows["mel"])
    steps = epochs * (n // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.06)
    aug = torch.Generator().manual_seed(seed)
    names = ("mel", "continuous", "categorical", "wavetable", "modulation", "midi_note")
    t0, step = time.perf_counter(), 0
    for epoch in range(epochs):
        model.train()
        order = np.random.default_rng(seed + epoch).permutation(n)
        for s in range(0, n - batch + 1, batch):
            idx = np.sort(order[s:s + batch])
            b = collate([{k: rows[k][i] for k in names} for i in idx], n_sources=len(registry.sources),
                        n_destinations=len(registry.destinations))
            mel = spec_augment(b["mel"], generator=aug) if augment else b["mel"]
            feat = model.features(mel, b["midi_note"])
            out = {name: getattr(model, name)(feat) for name in HEADS}  # as forward, keeping feat for the aux head
            loss = loss_fn(out, b, epoch=10.0)["loss"]  # past the modulation ramp: the shipped model is trained
            if aux:
                base = torch.from_numpy((rows["preset_index"][idx] % n_bases).astype(np.int64))
                loss = loss + aux * torch.nn.functional.cross_entropy(head(feat), base)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
        print(f"epoch {epoch}: {step * batch / (time.perf_counter() - t0):.1f} samples/s", flush=True)
    return model


def main() -> None:
    import torch

    import research.scripts.base_probe as bp
    from datagen.preset import shared_split
    from inference.predict import default_checkpoint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("train", help="a 64-mel perturbed data set to fine-tune on (its train split)")
    ap.add_argument("test", help="another perturbed data set to score on (base_probe.py)")
    ap.add_argument("--aux", type=float, default=0.5, help="weight of the base-naming loss (0: the control)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--no-spec-augment", action="store_true", help="fine-tune on clean mels")
    args = ap.parse_args()
    torch.set_num_threads(2)
    n_bases = len(shared_split("build"))
    model = finetune(args.train, aux=args.aux, epochs=args.epochs, lr=args.lr, batch=args.batch, seed=0,
                     n_bases=n_bases, augment=not args.no_spec_augment)
    rows = bp.rows_of(args.test)
    result = bp.score(rows, bp.network(default_checkpoint(), rows, model=model),
                      bp.stepped_from(rows))
    print(json.dumps({"aux": args.aux, "epochs": args.epochs, "lr": args.lr,
                      "spec_augment": not args.no_spec_augment, **result}, indent=1))


if __name__ == "__main__":
    main()
