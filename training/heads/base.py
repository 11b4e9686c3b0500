"""What every head file builds on: the `Head` record and the small pieces heads share (numpy views of outputs,
ratios; cross-entropy, draws, mode votes and one-hot constants for the class heads). Nothing here names a head."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass(frozen=True, kw_only=True)
class Head:
    """Everything about one output head. `name` is its attribute on the model (so the prefix of its weights in
    a checkpoint), its key in the forward dict, in a batch and in the data set, and the prefix of its loss parts
    and metrics. `ctx` below is the object running the head; the attributes a head may read are listed.

    build(config, in_dim) -> nn.Module        config: training.model.ModelConfig; the module maps (B, in_dim)
                                              pooled features to the head's output
    loss(output, batch, masks, ctx)           -> {part: 0-dim tensor}; the head's loss is their sum (parts are
                                              logged as loss/<name>_<part> when there are several).
                                              ctx: training.losses.PresetLoss (config, spec, predicted,
                                              importance); masks: `training.losses.masks` of the batch
    weight(config) -> float                   its factor in the total loss (config: LossConfig)
    warmup(config) -> float | None            epochs over which that factor ramps up from 0 (None: no ramp);
                                              a ramped head's current factor is logged as <name>_weight
    decode(output, ctx) -> row                row(b) -> (Preset fields, Decoded fields) of sample b.
                                              ctx: training.decode.Decoding (registry, catalog, predicted,
                                              base, rng, jitter, threshold, max_connections)
    metric(ctx)                               an accumulator: update(output, batch, masks), result() ->
                                              {<name>_...: number or None}. ctx: training.metrics.MetricSums
                                              (spec, predicted, groups, wavetable_map)
    baseline(ctx) or None                     the predict-the-mean fit: update(rows, masks) over a data set's
                                              rows (numpy), result() -> a JSON-able constant (what checkpoints
                                              store), and outputs(value, batch_size, ctx) -> that constant as
                                              this head's output. ctx: training.baseline.Sizes (spec,
                                              predicted, n_wavetables). None: the baseline has no such head.
    """

    name: str
    build: Callable
    loss: Callable
    weight: Callable
    decode: Callable
    metric: Callable
    baseline: type | None = None
    warmup: Callable | None = None


def to_numpy(x) -> np.ndarray:
    """A torch tensor (any device or dtype) or array-like as a float32 (or as-is) numpy array."""
    return x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def float64(t: torch.Tensor) -> np.ndarray:
    """A tensor as a float64 numpy array on the CPU (metrics sum in float64)."""
    return t.detach().double().cpu().numpy()


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def choose(probs: np.ndarray, rng: np.random.Generator | None) -> int:
    """The argmax of (n_classes,) probabilities, or a draw from them when an rng is given."""
    if rng is None:
        return int(probs.argmax())
    return int(rng.choice(len(probs), p=probs / probs.sum()))


def masked_cross_entropy(logits, targets: torch.Tensor, mask: torch.Tensor, *, smoothing: float) -> torch.Tensor:
    """Label-smoothed CE of k class heads, summed over unmasked (row, head) pairs / their count.
    logits: k tensors (B, n_classes_i); targets (B, k) class indices; mask (B, k) float 0/1.

    F.cross_entropy's value, computed for all k heads at once: the logits are laid into one (B, k, max n)
    tensor padded with -inf, so a step costs a handful of ops instead of ~6 per head (157 categorical heads
    made the loss and its backward ~10% of a CPU training step)."""
    sizes = tuple(int(z.shape[1]) for z in logits)
    if not sizes:
        return mask.new_zeros(())
    targets = targets.long()
    if targets.shape[1] != len(sizes) or bool((targets < 0).any()) or bool(
            (targets >= targets.new_tensor(sizes)).any()):
        raise ValueError(f"class targets out of range for heads of {sizes} classes")
    flat = torch.cat(logits, dim=1)  # (B, sum n_i)
    b, k, width = flat.shape[0], len(sizes), max(sizes)
    positions, valid = _padded_layout(sizes, flat.device)  # (sum n_i,) into k * width; (k, width) bool
    padded = flat.new_full((b, k * width), float("-inf")).index_copy(1, positions, flat).view(b, k, width)
    logp = padded.log_softmax(dim=-1)  # (B, k, width); -inf on the padding
    picked = logp.gather(2, targets[..., None]).squeeze(2)  # (B, k)
    n = valid.sum(1).to(logp.dtype)  # (k,) classes per head
    smooth = torch.where(valid, logp, logp.new_zeros(())).sum(-1) / n  # (B, k) mean log-probability
    ce = -(1.0 - smoothing) * picked - smoothing * smooth
    return (mask * ce).sum() / mask.sum().clamp_min(1.0)


@functools.lru_cache(maxsize=16)
def _padded_layout(sizes: tuple[int, ...], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each of the concatenated logits of heads of `sizes` classes goes in a (k, max size) grid, flattened;
    and which cells of that grid are classes (not padding)."""
    width = max(sizes)
    valid = torch.arange(width)[None, :] < torch.tensor(sizes)[:, None]  # (k, width)
    return valid.flatten().nonzero().squeeze(1).to(device), valid.to(device)


class Votes:
    """Class counts of k columns, masked and unmasked, for a masked mode (the baseline of a class head)."""

    def __init__(self, classes):
        self.votes = [np.zeros((2, int(n))) for n in classes]  # per column: (masked, unmasked) x n_classes

    def add(self, column: int, labels: np.ndarray, weights: np.ndarray) -> None:
        """labels (n,) int64 class indices of one column; weights (n,) the mask."""
        n = self.votes[column].shape[1]
        self.votes[column] += [np.bincount(labels, weights=weights, minlength=n)[:n],
                               np.bincount(labels, minlength=n)[:n]]

    def modes(self) -> list[int]:
        """The masked mode of each column; its unmasked mode where nothing was unmasked."""
        return [int(v[0 if v[0].sum() > 0 else 1].argmax()) for v in self.votes]


def one_hot(k: int, n: int, batch_size: int) -> torch.Tensor:
    """(batch_size, n) logits that choose class k: the output of a constant class head."""
    z = torch.zeros(batch_size, n)
    z[:, k] = 1.0
    return z


def ratio(a: float, b: float) -> float | None:
    """a / b as a float, or None (JSON null) when nothing was counted."""
    return float(a / b) if b > 0 else None
