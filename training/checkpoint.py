"""Checkpoints: everything needed to rebuild the model and read its outputs, with nothing else at hand.

A checkpoint is a plain dict of tensors and JSON-able values, saved with `torch.save` and loaded with
`torch.load(weights_only=True)` (a checkpoint is data, never code). Writes are atomic (temp file + rename).
Loading checks the format version and the registry fingerprint against the installed vita, and loads the
model state strictly.
"""

from __future__ import annotations

import os
from pathlib import Path

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here (missing, wrong version, other registry)."""


def save(path: Path, payload: dict) -> None:
    import torch

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({**payload, "format_version": FORMAT_VERSION}, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def load(path: Path, *, check_registry: bool = True) -> dict:
    """The checkpoint dict; CheckpointError with a one-line reason when it cannot be used."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, IndexError, ValueError) as e:
        raise CheckpointError(f"{path}: not a vital-match checkpoint ({str(e).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format_version") != FORMAT_VERSION:
        version = ckpt.get("format_version") if isinstance(ckpt, dict) else None
        raise CheckpointError(f"{path}: checkpoint format {version}, this code reads format {FORMAT_VERSION}")
    if check_registry:
        from datagen.registry import load_registry

        installed = load_registry().fingerprint
        if ckpt.get("registry_fingerprint") != installed:
            raise CheckpointError(f"{path}: trained for registry {ckpt.get('registry_fingerprint')}, the installed "
                                  f"vita has {installed}; retrain or install the matching vita")
    return ckpt


def build_model(ckpt: dict, path: Path):
    """The PresetEstimator a loaded checkpoint describes, its weights loaded strictly (as float32, so slim
    float16 checkpoints load too), in eval mode on the CPU. CheckpointError when they do not fit."""
    from training.model import ModelConfig, PresetEstimator

    try:
        model = PresetEstimator(ModelConfig.from_dict(ckpt["model_config"]))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()},
                              strict=True)
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: the weights do not fit the model config ({str(e).splitlines()[0]})") from None
    return model.eval()


TRAINING_ONLY = ("optimizer", "scheduler", "rng", "state")  # what resuming needs and inference does not


def slim(ckpt: dict, *, half: bool = True) -> dict:
    """The checkpoint for shipping: no optimizer / scheduler / RNG / trainer state, model weights in float16
    when `half` (inference casts them back to float32 on load). ResNet-18 + heads: ~30 MB in float16."""
    import torch

    model = {k: v.half() if half and v.is_floating_point() else v for k, v in ckpt["model"].items()}
    out = {k: v for k, v in ckpt.items() if k not in TRAINING_ONLY}
    out["model"] = model
    state = ckpt.get("state", {})
    out["trained"] = {"epochs": state.get("epoch", -1) + 1, "steps": state.get("step", 0),
                      "best_epoch": state.get("best_epoch"), "best_val_loss": state.get("best_val_loss"),
                      "half": half, "torch": str(torch.__version__)}  # a str: TorchVersion is not weights_only-safe
    return out
