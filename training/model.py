"""The preset estimator: a ResNet-18 over the log-mel spectrogram with one head per part of a `Preset`.

Input: the log-mel of `datagen.features.log_mel`, (B, 1, n_mels, n_frames) or (B, n_mels, n_frames)
(natural-log mel power, default 128 x 173). A BatchNorm2d(1) normalises it (the log-mel's level is around
-14..+5, far from ImageNet's unit scale), then torchvision's resnet18 (conv1 takes 1 channel, fc removed)
gives (B, 512) globally average-pooled features, which every head reads.

A model can also hear the MIDI note its preset is played at (`ModelConfig.band_octaves` non-empty): a second
input channel holds, on every row of the log-mel, how many octaves that mel band's centre lies above the note's
fundamental (a quarter of it, so the plane spans about -1..2). Without it a preset with an oscillator an octave
up played at C3 and the same preset played at C4 look nearly alike, so no transpose can be read from the sound;
inference renders at a known note (the clip's detected note), so the network is asked for the preset that
sounds like the clip at that note (research/learnability.md, section 13). `forward(mel, note)` takes the notes
as a (B,) tensor; a model without the plane ignores them.

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

import numpy as np
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
    # per mel band: log2(centre Hz / 440), `band_octaves(features)`; empty: the model does not hear the note
    # (every checkpoint before 2026-12-03)
    band_octaves: tuple[float, ...] = ()
    freeze_stages: int = 0  # 0..4: freeze conv1/bn1 and the first N of layer1..layer4
    dropout: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "categorical_classes", tuple(int(n) for n in self.categorical_classes))
        object.__setattr__(self, "predicted_categorical", tuple(int(i) for i in self.predicted_categorical))
        object.__setattr__(self, "band_octaves", tuple(float(x) for x in self.band_octaves))
        if self.band_octaves and len(self.band_octaves) != self.n_mels:
            raise ValueError(f"band_octaves has {len(self.band_octaves)} entries for {self.n_mels} mel bands")
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


def band_octaves(features) -> tuple[float, ...]:
    """`ModelConfig.band_octaves` for a `datagen.features.FeatureConfig`: log2(band centre Hz / 440) per band."""
    from datagen.features import mel_band_hz

    return tuple(float(x) for x in np.log2(mel_band_hz(features) / 440.0))


def _resnet18_backbone(in_channels: int) -> nn.Module:
    """torchvision resnet18, random init, conv1 with `in_channels` inputs, fc removed: (B, C, H, W) -> (B, 512)."""
    net = torchvision.models.resnet18(weights=None)
    old = net.conv1
    net.conv1 = nn.Conv2d(in_channels, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                          padding=old.padding, bias=False)
    net.fc = nn.Identity()
    return net


class PresetEstimator(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.input_norm = nn.BatchNorm2d(1)  # learned affine over the whole log-mel
        self.backbone = _resnet18_backbone(2 if config.band_octaves else 1)
        # (n_mels,) octaves re A4; not a weight (persistent=False): the config carries it
        self.register_buffer("band_octaves", torch.tensor(config.band_octaves, dtype=torch.float32),
                             persistent=False)
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

    @property
    def hears_note(self) -> bool:
        return bool(self.config.band_octaves)

    def note_plane(self, note: torch.Tensor, n_frames: int) -> torch.Tensor:
        """(B,) MIDI notes -> (B, 1, n_mels, n_frames): each band's octaves above the note's fundamental / 4."""
        above = self.band_octaves[None, :] - (note.to(self.band_octaves.dtype)[:, None] - 69.0) / 12.0  # (B, n_mels)
        return (above / 4.0)[:, None, :, None].expand(-1, 1, -1, n_frames)

    def features(self, mel: torch.Tensor, note: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, n_mels, n_frames) or (B, n_mels, n_frames) log-mel, and (B,) MIDI notes for a model that hears
        the note (ignored otherwise) -> (B, 512) pooled features."""
        if mel.dim() == 3:
            mel = mel.unsqueeze(1)
        expected = (1, self.config.n_mels, self.config.n_frames)
        if mel.dim() != 4 or tuple(mel.shape[1:]) != expected:
            raise ValueError(f"expected a log-mel of shape (B, {expected[1]}, {expected[2]}) or "
                             f"(B, 1, {expected[1]}, {expected[2]}), got {tuple(mel.shape)}")
        x = self.input_norm(mel)
        if self.hears_note:
            if note is None or tuple(note.shape) != (mel.shape[0],):
                raise ValueError(f"this model hears the played note: give (B,) = ({mel.shape[0]},) MIDI notes, "
                                 f"got {None if note is None else tuple(note.shape)}")
            x = torch.cat([x, self.note_plane(note.to(x.device), x.shape[-1]).to(x.dtype)], dim=1)
        return self.backbone(x)

    def forward(self, mel: torch.Tensor, note: torch.Tensor | None = None) -> dict:
        feat = self.features(mel, note)  # (B, 512)
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
        conv1 = conv1.mean(dim=1, keepdim=True)  # RGB -> mono, (64, 1, 7, 7)
        if model.hears_note:  # the note plane starts unheard: (64, 2, 7, 7)
            conv1 = torch.cat([conv1, torch.zeros_like(conv1)], dim=1)
        state["conv1.weight"] = conv1
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
