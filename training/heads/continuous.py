"""The continuous head: every continuous control of the registry, as its normalised value in [0, 1].

Output (B, n_continuous) after a sigmoid, registry.continuous order (the preset contract's normalised values).
Loss: importance-weighted absolute (LossConfig.continuous_error "l1") or squared ("l2") error over the unmasked
entries / their count. Decoded values are clamped to
[0, 1]. Metrics: masked MSE and MAE, overall and per registry module. Baseline: each column's masked mean.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.heads.base import Head, float64, ratio, to_numpy


class ContinuousHead(nn.Module):
    """(B, F) -> (B, n_continuous) sigmoid: the normalised continuous values, in (0, 1)."""

    def __init__(self, *, in_dim: int, hidden: int, n_continuous: int, dropout: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, n_continuous))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(feat))


def build(config, in_dim: int) -> ContinuousHead:
    return ContinuousHead(in_dim=in_dim, hidden=config.hidden, n_continuous=config.n_continuous,
                          dropout=config.dropout)


def loss(output: torch.Tensor, batch: dict, masks: dict, ctx) -> dict[str, torch.Tensor]:
    """Importance-weighted absolute or squared error (ctx.config.continuous_error; ctx.importance, (n_cont,)),
    normalised by the unmasked entries."""
    diff = output - batch["continuous"]  # (B, n_cont)
    err = diff.abs() if ctx.config.continuous_error == "l1" else diff ** 2
    mask = masks["continuous"]
    return {"continuous": (ctx.importance * mask * err).sum() / mask.sum().clamp_min(1.0)}


def decode(output, ctx):
    """Values clamped to [0, 1]; with ctx.rng, first moved by N(0, ctx.jitter) (drawn for the whole batch)."""
    values = to_numpy(output)  # (B, n_cont)
    if ctx.rng is not None and ctx.jitter > 0:
        values = values + ctx.rng.normal(0.0, ctx.jitter, values.shape)
    values = np.clip(values, 0.0, 1.0)
    names = [p.name for p in ctx.registry.continuous]
    return lambda b: ({"continuous": dict(zip(names, map(float, values[b])))}, {})


class Metric:
    """Masked squared and absolute errors per column (float64 sums), reported overall and per registry module
    (ctx.groups: the module of each column; None: no per-module numbers)."""

    def __init__(self, ctx):
        n = len(ctx.spec.continuous_names)
        self.groups = ctx.groups
        self.sq_err, self.abs_err, self.count = np.zeros(n), np.zeros(n), np.zeros(n)

    def update(self, output: torch.Tensor, batch: dict, masks: dict) -> None:
        mask = masks["continuous"].double()  # (B, n_cont)
        err = output.double() - batch["continuous"].double()
        self.sq_err += float64((mask * err * err).sum(0))
        self.abs_err += float64((mask * err.abs()).sum(0))
        self.count += float64(mask.sum(0))

    def result(self) -> dict:
        out = {"continuous_mse": ratio(self.sq_err.sum(), self.count.sum()),
               "continuous_mae": ratio(self.abs_err.sum(), self.count.sum()),
               "continuous_count": int(round(self.count.sum()))}
        if self.groups is None:
            return out
        by_group: dict[str, list[float]] = {}
        for g, sq, ab, n in zip(self.groups, self.sq_err, self.abs_err, self.count):
            s = by_group.setdefault(g, [0.0, 0.0, 0.0])
            s[0] += sq
            s[1] += ab
            s[2] += n
        groups = sorted(by_group)
        out["continuous_mse_by_group"] = {g: ratio(by_group[g][0], by_group[g][2]) for g in groups}
        out["continuous_mae_by_group"] = {g: ratio(by_group[g][1], by_group[g][2]) for g in groups}
        out["continuous_count_by_group"] = {g: int(round(by_group[g][2])) for g in groups}
        return out


class Baseline:
    """The masked mean of each column (its unmasked mean where it is never unmasked): (n_cont,) floats."""

    def __init__(self, ctx):
        n = len(ctx.spec.continuous_names)
        self.sums, self.counts = np.zeros((2, n)), np.zeros((2, n))  # masked, unmasked

    def update(self, rows: dict, masks: dict) -> None:
        values = rows["continuous"].astype(np.float64)  # (n, n_cont)
        mask = masks["continuous"]
        self.sums += [(mask * values).sum(0), values.sum(0)]
        self.counts += [mask.sum(0), np.full(values.shape[1], float(len(values)))]

    def result(self) -> list[float]:
        s, c = self.sums, self.counts
        return np.where(c[0] > 0, s[0] / np.maximum(c[0], 1), s[1] / np.maximum(c[1], 1)).astype(np.float32).tolist()

    @staticmethod
    def outputs(value, batch_size: int, ctx) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.float32).expand(batch_size, -1)


HEAD = Head(name="continuous", build=build, loss=loss, weight=lambda c: c.weight_continuous, decode=decode,
            metric=Metric, baseline=Baseline)
