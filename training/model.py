"""The preset estimator: a ResNet-18 over the log-mel spectrogram with one head per part of a `Preset`.

Input: the log-mel of `datagen.features.log_mel`, (B, 1, n_mels, n_frames) or (B, n_mels, n_frames)
(natural-log mel power, default 128 x 173). A BatchNorm2d(1) normalises it (the log-mel's level is around
-14..+5, far from ImageNet's unit scale), then torchvision's resnet18 (conv1 takes 1 channel, fc removed)
gives (B, 512) globally average-pooled features, which every head reads.

Output of `PresetEstimator.forward`: a dict keyed by head name, one entry per head of `training.heads.HEADS`
(shapes listed there). Each head is a submodule under its own name (`model.continuous`, ...), beside
`input_norm` and `backbone`: those names are the checkpoint's weight names.

Not every categorical parameter is predicted: `model_config_for` keeps those with at most `max_classes`
(128) classes. The registry's huge-range ones are left at their init-preset value by whoever builds a
`Preset` from a prediction: `effect_chain_order` (362,880 = 9! permutations of the effects) and the four
`*_transpose_quantize` bit masks (8,192 = 2**13 each); one softmax over them would be mostly never-seen
classes.

Initialisation is random by default. `load_pretrained_backbone` loads a LOCAL torchvision ImageNet resnet18
state dict file; nothing here ever downloads weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from training.heads import HEADS

FEATURE_DIM = 512  # resnet18's pooled feature width
STAGES = ("layer1", "layer2", "layer3", "layer4")


class BackboneError(ValueError):
    """A pretrained backbone file that does not fit resnet18."""


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    n_mels: int = 128
    n_frames: int = 173
    n_continuous: int  # len(registry.continuous)
    categorical_classes: tuple[int, ...]  # class count per predicted categorical parameter
    predicted_categorical: tuple[int, ...]  # their column indices into registry.categorical
    n_wavetables: int  # catalog size + 1: class 0 = the init preset's table, class k = catalog index k - 1
    n_sources: int = 32  # len(registry.sources)
    n_destinations: int = 428  # len(registry.destinations)
    embed_dim: int = 64  # modulation source/destination embedding width
    hidden: int = 512  # MLP width of the continuous (and shared categorical) head
    categorical_mlp: bool = False  # False: one linear per categorical param; True: shared hidden layer first
    freeze_stages: int = 0  # 0..4: freeze conv1/bn1 and the first N of layer1..layer4
    dropout: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "categorical_classes", tuple(int(n) for n in self.categorical_classes))
        object.__setattr__(self, "predicted_categorical", tuple(int(i) for i in self.predicted_categorical))
        if len(self.categorical_classes) != len(self.predicted_categorical):
            raise ValueError(f"{len(self.categorical_classes)} class counts for "
                             f"{len(self.predicted_categorical)} predicted categorical parameters")
        if any(n < 2 for n in self.categorical_classes):
            raise ValueError(f"every categorical parameter needs >= 2 classes: {self.categorical_classes}")
        if not 0 <= self.freeze_stages <= len(STAGES):
            raise ValueError(f"freeze_stages must be in 0..{len(STAGES)}, got {self.freeze_stages}")
        if min(self.n_mels, self.n_frames, self.n_continuous, self.n_wavetables, self.n_sources,
               self.n_destinations, self.embed_dim, self.hidden) < 1:
            raise ValueError(f"model sizes must be positive: {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        """JSON-able (tuples become lists); `from_dict` restores the tuples."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**d)  # __post_init__ turns lists back into tuples


def model_config_for(registry, *, n_wavetables: int, max_classes: int = 128, **overrides) -> ModelConfig:
    """A ModelConfig for a registry. Predicts every categorical parameter with n_classes <= max_classes;
    the huge-range ones (effect_chain_order: 362,880; *_transpose_quantize: 8,192) are not predicted.
    `overrides` set any other ModelConfig field (embed_dim, hidden, freeze_stages, ...)."""
    predicted = [i for i, p in enumerate(registry.categorical) if p.n_classes <= max_classes]
    fields = dict(
        n_continuous=len(registry.continuous),
        categorical_classes=tuple(registry.categorical[i].n_classes for i in predicted),
        predicted_categorical=tuple(predicted),
        n_wavetables=n_wavetables,
        n_sources=len(registry.sources),
        n_destinations=len(registry.destinations),
    )
    fields.update(overrides)
    return ModelConfig(**fields)


def _resnet18_backbone() -> nn.Module:
    """torchvision resnet18, random init, conv1 with 1 input channel, fc removed: (B, 1, H, W) -> (B, 512)."""
    net = torchvision.models.resnet18(weights=None)
    old = net.conv1
    net.conv1 = nn.Conv2d(1, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                          padding=old.padding, bias=False)
    net.fc = nn.Identity()
    return net


class PresetEstimator(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.input_norm = nn.BatchNorm2d(1)  # learned affine over the whole log-mel
        self.backbone = _resnet18_backbone()
        for name, head in HEADS.items():  # the attribute is the head's name: its weights' names in a checkpoint
            setattr(self, name, head.build(config, FEATURE_DIM))
        for module in self.frozen_modules():
            module.requires_grad_(False)

    def frozen_modules(self) -> list[nn.Module]:
        """conv1, bn1 and layer1..layerN of the backbone for freeze_stages = N (none for 0)."""
        n = self.config.freeze_stages
        if n == 0:
            return []
        b = self.backbone
        return [b.conv1, b.bn1] + [getattr(b, name) for name in STAGES[:n]]

    def train(self, mode: bool = True) -> "PresetEstimator":
        """As nn.Module.train, but frozen stages stay in eval mode: their BatchNorm statistics stay fixed."""
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 1, n_mels, n_frames) or (B, n_mels, n_frames) log-mel -> (B, 512) pooled features."""
        if mel.dim() == 3:
            mel = mel.unsqueeze(1)
        expected = (1, self.config.n_mels, self.config.n_frames)
        if mel.dim() != 4 or tuple(mel.shape[1:]) != expected:
            raise ValueError(f"expected a log-mel of shape (B, {expected[1]}, {expected[2]}) or "
                             f"(B, 1, {expected[1]}, {expected[2]}), got {tuple(mel.shape)}")
        return self.backbone(self.input_norm(mel))

    def forward(self, mel: torch.Tensor) -> dict:
        feat = self.features(mel)  # (B, 512)
        return {name: getattr(self, name)(feat) for name in HEADS}


def load_pretrained_backbone(model: PresetEstimator, path: str | Path) -> None:
    """Load a local torchvision ImageNet resnet18 state dict (`resnet18-*.pth`) into model.backbone.

    conv1's RGB weights (64, 3, 7, 7) are averaged to one channel (64, 1, 7, 7); fc.* is ignored; every
    other key must be present with the right shape and nothing else may be there (BackboneError otherwise).
    BatchNorm `num_batches_tracked` counters, absent from old torchvision files, are optional. Never
    downloads: a missing file raises FileNotFoundError. Frozen parameters stay frozen.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pretrained backbone file at {path} (weights are never downloaded; "
                                f"pass a local torchvision resnet18 state dict)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one domain error
        raise BackboneError(f"{path}: not a readable torch state dict ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"{path}: expected a state dict of tensors (a torchvision resnet18 .pth file)")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}

    own = model.backbone.state_dict()
    conv1 = state.get("conv1.weight")
    if conv1 is not None and conv1.dim() == 4 and conv1.shape[1] == 3:
        state["conv1.weight"] = conv1.mean(dim=1, keepdim=True)  # RGB -> mono, (64, 1, 7, 7)
    for key, value in own.items():  # old torchvision files have no BatchNorm batch counters
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value.clone()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise BackboneError(f"{path}: not a resnet18 state dict: missing {_few(missing)}, "
                            f"unexpected {_few(unexpected)}")
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
             if state[k].shape != v.shape]
    if wrong:
        raise BackboneError(f"{path}: {len(wrong)} tensor(s) of the wrong shape: {_few(wrong)}")
    model.backbone.load_state_dict(state, strict=True)


def _few(items: list[str], n: int = 5) -> str:
    if not items:
        return "none"
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
