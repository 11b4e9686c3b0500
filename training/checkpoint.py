"""Checkpoints: everything needed to rebuild the model and read its outputs, with nothing else at hand.

A checkpoint is a plain dict of tensors and JSON-able values, saved with `torch.save` and loaded with
`torch.load(weights_only=True)` (a checkpoint is data, never code). Writes are atomic (temp file + rename).
Loading checks the format version and the registry fingerprint against the installed vita, and loads the
model state strictly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datagen.features import FeatureConfig
    from datagen.render import RenderConfig
    from datagen.wavetables import Catalog
    from training.losses import LossConfig

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here (missing, wrong version, other registry)."""


def save(path: Path, payload: dict) -> None:
    import torch

    from datagen.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save({**payload, "format_version": FORMAT_VERSION}, tmp)


def load(path: Path, *, check_registry: bool = True) -> dict:
    """The checkpoint dict; CheckpointError with a one-line reason when it cannot be used."""
    import pickle
    import warnings

    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: " + ("is a directory, expected a checkpoint file" if path.is_dir()
                                             else "no such checkpoint"))
    try:
        with warnings.catch_warnings():  # torch warns about legacy formats; the one line below says it all
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message advises weights_only=False: never do that with a file from elsewhere
        if "unsupported global" in str(e).lower():
            raise CheckpointError(f"{path}: refused, it holds Python objects (code), not just data; a "
                                  "vital-match checkpoint holds only tensors and plain values") from None
        raise CheckpointError(f"{path}: not a checkpoint (not a PyTorch file)") from None
    except (RuntimeError, EOFError, KeyError, IndexError, ValueError, TypeError, OSError, AttributeError):
        raise CheckpointError(f"{path}: not a checkpoint (not a PyTorch file, or a truncated one)") from None
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


@dataclass(frozen=True)
class Contents:
    """What a checkpoint says about reading the model's inputs and outputs."""

    features: FeatureConfig  # the log-mel the model hears
    render: RenderConfig  # how its training data was rendered (sample rate, velocity, key held, length)
    catalog: Catalog  # wavetable class k -> the catalog's table k - 1
    tier: int  # the sampler tier of its training data
    loss: LossConfig  # the loss it was trained with (decoding reads modulation_pos_weight); a checkpoint from
    #                   before the trainer stored it was trained with the defaults (pos_weight was never an option)


def contents(ckpt: dict, path: Path) -> Contents:
    """Parse a loaded checkpoint's feature config, render config, wavetable catalog, tier and loss config;
    CheckpointError naming the part that is missing or corrupt (never a KeyError or WavetableError)."""
    from datagen.features import FeatureConfig
    from datagen.render import RenderConfig
    from datagen.wavetables import Catalog
    from training.losses import LossConfig

    missing = [k for k in ("feature_config", "render_config", "wavetable_catalog", "tier") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, no {', '.join(missing)}")
    part = "feature_config"
    try:
        features = FeatureConfig.from_json(ckpt["feature_config"])
        part = "render_config"
        render = RenderConfig.from_json(ckpt["render_config"])
        if render.sample_rate != features.sample_rate:
            raise ValueError(f"renders at {render.sample_rate} Hz, the features are at {features.sample_rate} Hz")
        part = "wavetable_catalog"
        catalog = Catalog.from_json(ckpt["wavetable_catalog"])
        part = "tier"
        tier = int(ckpt["tier"])
        part = "loss_config"
        loss = LossConfig(**{"continuous_error": "l2", **ckpt.get("loss_config", {})})  # l2 before the field
        if loss.modulation_pos_weight <= 0:
            raise ValueError(f"modulation_pos_weight {loss.modulation_pos_weight} is not > 0")
    except (TypeError, ValueError, RecursionError) as e:  # WavetableError is a ValueError
        raise CheckpointError(f"{path}: corrupt {part} ({(str(e).splitlines() or [''])[0][:200]})") from None
    return Contents(features=features, render=render, catalog=catalog, tier=tier, loss=loss)


def build_model(ckpt: dict, path: Path):
    """The PresetEstimator a loaded checkpoint describes, its weights loaded strictly (as float32, so slim
    float16 checkpoints load too), in eval mode on the CPU. CheckpointError when they do not fit."""
    from training.model import ModelConfig, PresetEstimator

    try:
        model = PresetEstimator(ModelConfig.from_dict(ckpt["model_config"]))
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: the weights do not fit the model config ({str(e).splitlines()[0]})") from None
    load_weights(model, ckpt, path)
    return model.eval()


def load_weights(model, ckpt: dict, path: Path) -> None:
    """Load a loaded checkpoint's weights into `model` strictly, as float32 (so slim float16 checkpoints load
    too). CheckpointError when they do not fit (`build_model`, and `train --init-from` for fine-tuning)."""
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()},
                              strict=True)
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: the weights do not fit the model config ({str(e).splitlines()[0]})") from None


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
