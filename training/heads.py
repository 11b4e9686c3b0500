"""Output heads of the preset estimator. Each takes the backbone's pooled features (B, F), F = 512 for
ResNet-18, and returns tensors for one part of a `Preset`:

- `ContinuousHead`: (B, n_continuous) in (0, 1), the registry's normalised continuous values.
- `CategoricalHeads`: list of (B, n_classes_i) logits, one per predicted categorical parameter.
- `WavetableHeads`: list of 3 (B, n_wavetables) logits, one per oscillator.
- `ModulationHead`: (B, 5, n_sources, n_destinations), a factored bilinear score for every
  (source, destination) pair; channels in `MODULATION_CHANNELS` order.
"""

from __future__ import annotations

import torch
from torch import nn

from datagen.registry import N_OSCILLATORS

# Channels of ModulationHead's output, dim 1.
MODULATION_CHANNELS = ("presence", "amount", "bipolar", "power", "stereo")
PRESENCE, AMOUNT, BIPOLAR, POWER, STEREO = range(len(MODULATION_CHANNELS))
POWER_LIMIT = 10.0  # Vital's modulation power is in [-10, 10]


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


class ContinuousHead(nn.Module):
    """(B, F) -> (B, n_continuous) sigmoid: the normalised continuous values, in (0, 1)."""

    def __init__(self, *, in_dim: int, hidden: int, n_continuous: int, dropout: float):
        super().__init__()
        self.mlp = _mlp(in_dim, hidden, n_continuous, dropout)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(feat))


class CategoricalHeads(nn.Module):
    """(B, F) -> list of (B, n_classes_i) logits. One linear per parameter on the features, or (`shared_mlp`)
    one shared hidden layer (F -> hidden) followed by one linear per parameter."""

    def __init__(self, *, in_dim: int, hidden: int, classes: tuple[int, ...], shared_mlp: bool, dropout: float):
        super().__init__()
        if shared_mlp:
            self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout))
            head_in = hidden
        else:
            self.trunk = nn.Dropout(dropout)
            head_in = in_dim
        self.heads = nn.ModuleList(nn.Linear(head_in, n) for n in classes)

    def forward(self, feat: torch.Tensor) -> list[torch.Tensor]:
        h = self.trunk(feat)
        return [head(h) for head in self.heads]


class WavetableHeads(nn.Module):
    """(B, F) -> list of 3 (B, n_wavetables) logits, one per oscillator (class 0 = the init preset's table,
    class k = catalog index k - 1)."""

    def __init__(self, *, in_dim: int, n_wavetables: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleList(nn.Linear(in_dim, n_wavetables) for _ in range(N_OSCILLATORS))

    def forward(self, feat: torch.Tensor) -> list[torch.Tensor]:
        h = self.dropout(feat)
        return [head(h) for head in self.heads]


class ModulationHead(nn.Module):
    """Factored bilinear scores for all (source, destination) pairs of Vital's modulation matrix.

    feat (B, F) -> context z = GELU(Linear(feat)) (B, E), E = embed_dim. Each source and destination has a
    learned base embedding, shifted per sample by a linear map of z:

        src[b, s] = base_src[s] + (A_src z[b])[s]      (B, S, E)   S = n_sources (32)
        dst[b, d] = base_dst[d] + (A_dst z[b])[d]      (B, D, E)   D = n_destinations (428)

    and each of the 5 channels c has its own bilinear form W_c (E x E) and scalar bias:

        out[b, c, s, d] = src[b, s] @ W_c @ dst[b, d] + bias_c      (B, 5, S, D)

    Channels (`MODULATION_CHANNELS`): presence logit; amount = tanh (Vital's [-1, 1]); bipolar logit;
    power = 10 tanh (Vital's [-10, 10]); stereo logit. The presence bias starts at `presence_bias` (-5:
    p = 0.0067) because connections are sparse (~10 of the 13,696 pairs per preset); the bilinear term starts
    small (std ~0.02) so every pair starts near that prior.
    """

    def __init__(self, *, in_dim: int, n_sources: int, n_destinations: int, embed_dim: int, dropout: float,
                 presence_bias: float = -5.0):
        super().__init__()
        self.n_sources, self.n_destinations, self.embed_dim = n_sources, n_destinations, embed_dim
        e = embed_dim
        self.context = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, e), nn.GELU())
        # base embeddings with unit expected norm: entries ~ N(0, 1/E)
        self.base_src = nn.Parameter(torch.randn(n_sources, e) / e**0.5)
        self.base_dst = nn.Parameter(torch.randn(n_destinations, e) / e**0.5)
        self.src_shift = nn.Linear(e, n_sources * e, bias=False)  # bias would duplicate base_src
        self.dst_shift = nn.Linear(e, n_destinations * e, bias=False)
        nn.init.normal_(self.src_shift.weight, std=0.02)
        nn.init.normal_(self.dst_shift.weight, std=0.02)
        n_ch = len(MODULATION_CHANNELS)
        self.bilinear = nn.Parameter(torch.randn(n_ch, e, e) * 0.02)  # W_c, (5, E, E)
        bias = torch.zeros(n_ch)
        bias[PRESENCE] = presence_bias
        self.bias = nn.Parameter(bias)  # (5,)

    def embeddings(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample source (B, S, E) and destination (B, D, E) embeddings."""
        z = self.context(feat)  # (B, E)
        b = feat.shape[0]
        src = self.base_src[None] + self.src_shift(z).view(b, self.n_sources, self.embed_dim)
        dst = self.base_dst[None] + self.dst_shift(z).view(b, self.n_destinations, self.embed_dim)
        return src, dst

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        src, dst = self.embeddings(feat)
        left = torch.einsum("bse,cef->bcsf", src, self.bilinear)  # (B, 5, S, E)
        out = left @ dst.transpose(1, 2)[:, None] + self.bias[None, :, None, None]  # (B, 5, S, D)
        amount = torch.tanh(out[:, AMOUNT])
        power = POWER_LIMIT * torch.tanh(out[:, POWER])
        return torch.stack([out[:, PRESENCE], amount, out[:, BIPOLAR], power, out[:, STEREO]], dim=1)
