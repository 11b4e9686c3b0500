"""The categorical head: one softmax per predicted categorical control (ModelConfig.predicted_categorical).

Output: a list of (B, n_classes_i) logits, one per predicted column of registry.categorical (class = raw - min).
The huge-range controls (`effect_chain_order`, `*_transpose_quantize`) are not predicted: they keep the base
preset's value (see `training.model.model_config_for`). Loss: label-smoothed cross-entropy over the unmasked
(row, parameter) pairs. Decoded: the argmax (or a draw), with its probability as confidence. Metrics: masked
argmax accuracy, overall and per parameter. Baseline: each parameter's masked mode.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from training.heads.base import (Head, Votes, choose, float64, masked_cross_entropy, one_hot, ratio, softmax,
                                 to_numpy)


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

    @property
    def sizes(self) -> tuple[int, ...]:
        """Classes of each head, in order."""
        return tuple(head.out_features for head in self.heads)

    def forward(self, feat: torch.Tensor) -> list[torch.Tensor]:
        h = self.trunk(feat)
        sizes = self.sizes
        if not sizes:
            return []
        # one matrix product for every parameter (157 small ones were a visible share of a CPU step); the
        # weights stay one Linear per parameter, so checkpoints keep their names
        weight = torch.cat([head.weight for head in self.heads])  # (sum n_i, head_in)
        bias = torch.cat([head.bias for head in self.heads])
        return list(torch.nn.functional.linear(h, weight, bias).split(sizes, dim=1))


def build(config, in_dim: int) -> CategoricalHeads:
    return CategoricalHeads(in_dim=in_dim, hidden=config.hidden, classes=config.categorical_classes,
                            shared_mlp=config.categorical_mlp, dropout=config.dropout)


def loss(output: list[torch.Tensor], batch: dict, masks: dict, ctx) -> dict[str, torch.Tensor]:
    """Label-smoothed CE summed over unmasked (row, predicted parameter) pairs / their count."""
    predicted = list(ctx.predicted)
    if len(output) != len(predicted):
        raise ValueError(f"{len(output)} categorical heads, {len(predicted)} predicted parameters")
    mask = masks["categorical"][:, predicted]  # (B, n_cat')
    if not predicted:
        return {"categorical": mask.new_zeros(())}
    return {"categorical": masked_cross_entropy(output, batch["categorical"][:, predicted], mask,
                                                smoothing=ctx.config.label_smoothing)}


def decode(output, ctx):
    """Each predicted parameter's argmax (a draw with ctx.rng) over the base preset's categorical values;
    confidence: name -> probability of the chosen class."""
    probs = [softmax(to_numpy(z)) for z in output]  # each (B, n_classes)
    params = [ctx.registry.categorical[col] for col in ctx.predicted]

    def row(b: int):
        categorical, confidence = dict(ctx.base.categorical), {}
        for p, pr in zip(params, probs):
            k = choose(pr[b], ctx.rng)
            categorical[p.name] = k
            confidence[p.name] = float(pr[b, k])
        return {"categorical": categorical}, {"confidence": confidence}

    return row


class Metric:
    """Masked argmax hits per predicted column (only those move), reported overall and per parameter."""

    def __init__(self, ctx):
        self.predicted = list(ctx.predicted)
        self.names = ctx.spec.categorical_names
        self.correct, self.count = np.zeros(len(self.names)), np.zeros(len(self.names))

    def update(self, output: list[torch.Tensor], batch: dict, masks: dict) -> None:
        if not self.predicted:
            return
        mask = masks["categorical"][:, self.predicted].double()  # (B, n_cat')
        guess = torch.stack([z.argmax(dim=1) for z in output], dim=1)
        hit = (guess == batch["categorical"][:, self.predicted].to(guess.device)).double()
        self.correct[self.predicted] += float64((mask * hit).sum(0))
        self.count[self.predicted] += float64(mask.sum(0))

    def result(self) -> dict:
        return {"categorical_accuracy": ratio(self.correct.sum(), self.count.sum()),
                "categorical_count": int(round(self.count.sum())),
                "categorical_accuracy_by_param": {self.names[i]: ratio(self.correct[i], self.count[i])
                                                  for i in self.predicted}}


class Baseline:
    """The masked mode of each predicted parameter: a class per predicted column, in ctx.predicted order."""

    def __init__(self, ctx):
        self.predicted = list(ctx.predicted)
        self.votes = Votes(ctx.spec.categorical_classes[i] for i in self.predicted)

    def update(self, rows: dict, masks: dict) -> None:
        labels, mask = rows["categorical"].astype(np.int64), masks["categorical"]  # (n, n_cat) each
        for j, i in enumerate(self.predicted):
            self.votes.add(j, labels[:, i], mask[:, i])

    def result(self) -> list[int]:
        return self.votes.modes()

    @staticmethod
    def outputs(value, batch_size: int, ctx) -> list[torch.Tensor]:
        return [one_hot(int(k), ctx.spec.categorical_classes[i], batch_size) for k, i in zip(value, ctx.predicted)]


HEAD = Head(name="categorical", build=build, loss=loss, weight=lambda c: c.weight_categorical, decode=decode,
            metric=Metric, baseline=Baseline)
