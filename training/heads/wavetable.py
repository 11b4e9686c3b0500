"""The wavetable head: which table each of the 3 oscillators plays.

Output: a list of 3 (B, n_wavetables) logits, one per oscillator. Class 0 is the init preset's table, class k
the checkpoint catalog's entry k - 1 (the data set stores k - 1, -1 for the init table; `training.data.collate`
adds 1). An oscillator's table is heard only when it is on (`osc_N_on` = 1): the loss, the metric and the
baseline count only those. Loss: label-smoothed cross-entropy. Decoded: the argmax (or a draw) with its
probability. Metric: argmax accuracy, with the model's classes mapped to the data set's catalog
(`wavetable_class_map`). Baseline: each oscillator's masked mode.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from datagen.registry import N_OSCILLATORS, OSCILLATORS
from training.heads.base import (Head, Votes, choose, float64, masked_cross_entropy, one_hot, ratio, softmax,
                                 to_numpy)


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


def build(config, in_dim: int) -> WavetableHeads:
    return WavetableHeads(in_dim=in_dim, n_wavetables=config.n_wavetables, dropout=config.dropout)


def switch_columns(spec) -> list[int]:
    """The registry.categorical columns of `osc_1_on` .. `osc_3_on`: an oscillator's table is heard when 1."""
    return [spec.categorical_names.index(f"{osc}_on") for osc in OSCILLATORS]


def loss(output: list[torch.Tensor], batch: dict, masks: dict, ctx) -> dict[str, torch.Tensor]:
    """Label-smoothed CE of the 3 oscillators' classes (batch["wavetable"], (B, 3)) over those that are on."""
    on = (batch["categorical"][:, switch_columns(ctx.spec)] == 1).to(output[0].dtype)  # (B, 3)
    return {"wavetable": masked_cross_entropy(output, batch["wavetable"], on, smoothing=ctx.config.label_smoothing)}


def decode(output, ctx):
    """Per oscillator, the argmax class (a draw with ctx.rng): None (the init table) or the catalog's data."""
    probs = [softmax(to_numpy(z)) for z in output]  # 3 x (B, n_tables + 1)

    def row(b: int):
        tables, confidence = [], []
        for pr in probs:
            k = choose(pr[b], ctx.rng)
            tables.append(None if k == 0 else ctx.catalog[k - 1].data)
            confidence.append(float(pr[b, k]))
        return {"wavetables": tuple(tables)}, {"wavetable_confidence": tuple(confidence)}

    return row


def wavetable_class_map(model_catalog, data_catalog) -> np.ndarray:
    """(len(model_catalog) + 1,) int64: the data set's class for each model class, matched by table content
    (0 = init table for both; -1 = a table the data set's catalog does not have). Identity when the model
    was trained on this catalog; an ingested set extends the procedural catalog, so classes still line up."""
    by_hash: dict[str, int] = {}
    for j, t in enumerate(data_catalog):
        by_hash.setdefault(t.content_hash, j + 1)
    return np.array([0] + [by_hash.get(t.content_hash, -1) for t in model_catalog], np.int64)


class Metric:
    """Argmax hits per oscillator over the oscillators that are on (the loss' mask). ctx.wavetable_map, when not
    None, maps the model's classes to the data set's (`wavetable_class_map`)."""

    def __init__(self, ctx):
        self.switch = switch_columns(ctx.spec)
        self.map = ctx.wavetable_map
        self.correct, self.count = np.zeros(N_OSCILLATORS), np.zeros(N_OSCILLATORS)

    def update(self, output: list[torch.Tensor], batch: dict, masks: dict) -> None:
        on = (batch["categorical"][:, self.switch] == 1).double()  # (B, 3)
        guess = torch.stack([z.argmax(dim=1) for z in output], dim=1).cpu()  # (B, 3)
        if self.map is not None:
            guess = torch.from_numpy(self.map)[guess]
        hit = (guess == batch["wavetable"].cpu()).double()
        self.correct += float64((on.cpu() * hit).sum(0))
        self.count += float64(on.sum(0))

    def result(self) -> dict:
        return {"wavetable_accuracy": ratio(self.correct.sum(), self.count.sum()),
                "wavetable_count": int(round(self.count.sum()))}


class Baseline:
    """Each oscillator's masked mode class (over the rows where it is on): 3 classes."""

    def __init__(self, ctx):
        self.switch = switch_columns(ctx.spec)
        self.votes = Votes([ctx.n_wavetables] * N_OSCILLATORS)

    def update(self, rows: dict, masks: dict) -> None:
        classes = rows["wavetable"].astype(np.int64) + 1  # (n, 3): the stored -1 is the init table, class 0
        on = (rows["categorical"][:, self.switch] == 1).astype(np.float64)
        for o in range(N_OSCILLATORS):
            self.votes.add(o, classes[:, o], on[:, o])

    def result(self) -> list[int]:
        return self.votes.modes()

    @staticmethod
    def outputs(value, batch_size: int, ctx) -> list[torch.Tensor]:
        return [one_hot(int(k), ctx.n_wavetables, batch_size) for k in value]


HEAD = Head(name="wavetable", build=build, loss=loss, weight=lambda c: c.weight_wavetable, decode=decode,
            metric=Metric, baseline=Baseline)
