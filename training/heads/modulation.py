"""The modulation head: a score for every (source, destination) cell of Vital's modulation matrix.

Output (B, 5, n_sources, n_destinations), channels in `MODULATION_CHANNELS` order: presence logit, amount
(tanh, Vital's [-1, 1]), bipolar logit, power (10 tanh, Vital's [-10, 10]), stereo logit; the dense target
(`training.data.collate`) has the same layout with presence / bipolar / stereo in {0, 1}. Loss: presence BCE
over every cell, the other channels on the target's connections only (`modulation_parts`), ramped in over
`LossConfig.modulation_warmup_epochs`. Decoded: cells whose presence probability (`presence_probability`: the
logit corrected for the loss's pos_weight) is >= threshold, most confident first, capped at Vital's 64 slots.
Metrics: presence precision / recall at probability 0.5 and the amount's MAE on true positives. No baseline: the
predict-the-mean constant routes nothing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.heads.base import Head, ratio, to_numpy

MODULATION_CHANNELS = ("presence", "amount", "bipolar", "power", "stereo")  # dim 1 of the output and target
PRESENCE, AMOUNT, BIPOLAR, POWER, STEREO = range(len(MODULATION_CHANNELS))
POWER_LIMIT = 10.0  # Vital's modulation power is in [-10, 10]


def presence_probability(logits: np.ndarray, pos_weight: float) -> np.ndarray:
    """The probability of a connection from presence logits (any shape) trained by BCE with `pos_weight` w.

    BCE weighting positives by w is minimised at sigmoid(logit) = w p / (w p + 1 - p): the odds of the true
    probability p scaled by w. So p = sigmoid(logit - log w). Without this the decoder's 0.5 threshold sits at
    p ~ 1 / (1 + w) (~0.01 for the default w = 100) and routes every faint guess: on 60 held-out test rows of the
    realistic set the shipped model routed 17.0 connections per row (precision 0.26), and its renders scored
    mss 2.07 against 1.87 with the correction (research/learnability.md section 12)."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(logits, np.float64) - np.log(pos_weight))))


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


def build(config, in_dim: int) -> ModulationHead:
    return ModulationHead(in_dim=in_dim, n_sources=config.n_sources, n_destinations=config.n_destinations,
                          embed_dim=config.embed_dim, dropout=config.dropout)


def modulation_parts(output: torch.Tensor, target: torch.Tensor, *, config) -> dict[str, torch.Tensor]:
    """The five modulation terms (0-dim tensors). output/target (B, 5, S, D); config: LossConfig.

    presence: BCE-with-logits with pos_weight, mean over all B*S*D cells. amount, power, bipolar, stereo: on
    active cells only (target presence == 1), summed and divided by max(#active, 1); power errors are divided
    by `power_scale` first."""
    active = (target[:, PRESENCE] > 0.5).to(output.dtype)  # (B, S, D)
    n_active = active.sum().clamp_min(1.0)
    pos_weight = output.new_tensor(config.modulation_pos_weight)
    presence = F.binary_cross_entropy_with_logits(output[:, PRESENCE], target[:, PRESENCE], pos_weight=pos_weight)
    amount = (active * (output[:, AMOUNT] - target[:, AMOUNT]) ** 2).sum() / n_active
    power = (active * ((output[:, POWER] - target[:, POWER]) / config.power_scale) ** 2).sum() / n_active
    bce = lambda c: (active * F.binary_cross_entropy_with_logits(  # noqa: E731
        output[:, c], target[:, c], reduction="none")).sum() / n_active
    return {"presence": presence, "amount": amount, "power": power, "bipolar": bce(BIPOLAR), "stereo": bce(STEREO)}


def loss(output: torch.Tensor, batch: dict, masks: dict, ctx) -> dict[str, torch.Tensor]:
    return modulation_parts(output, batch["modulation"], config=ctx.config)


def decode(output, ctx):
    """Cells with presence probability (`presence_probability`, ctx.pos_weight) >= ctx.threshold, most confident
    first, at most ctx.max_connections; amount and power clipped to Vital's ranges, bipolar / stereo at logit >= 0.
    Confidence: each connection's presence probability."""
    from datagen.preset import Modulation

    mod = to_numpy(output)  # (B, 5, S, D)
    sources, destinations = ctx.registry.sources, ctx.registry.destinations

    def row(b: int):
        presence = presence_probability(mod[b, PRESENCE], ctx.pos_weight)  # (S, D)
        s_idx, d_idx = np.nonzero(presence >= ctx.threshold)
        order = np.argsort(-presence[s_idx, d_idx], kind="stable")[:ctx.max_connections]
        mods, confidence = [], []
        for i in order:
            s, d = int(s_idx[i]), int(d_idx[i])
            cell = mod[b, :, s, d]
            mods.append(Modulation(source=sources[s], destination=destinations[d],
                                   amount=float(np.clip(cell[AMOUNT], -1, 1)), bipolar=bool(cell[BIPOLAR] >= 0),
                                   power=float(np.clip(cell[POWER], -POWER_LIMIT, POWER_LIMIT)),
                                   stereo=bool(cell[STEREO] >= 0)))
            confidence.append(float(presence[s, d]))
        return {"modulations": tuple(mods)}, {"modulation_confidence": tuple(confidence)}

    return row


class Metric:
    """Presence at probability >= 0.5 (logit >= log pos_weight, see `presence_probability`; ctx.pos_weight)
    against the target's connections: true / false positive and false negative counts, and the |amount error|
    summed over true positives."""

    def __init__(self, ctx):
        self.tp = self.fp = self.fn = self.amount_err = 0.0
        self.min_logit = float(np.log(ctx.pos_weight))

    def update(self, output: torch.Tensor, batch: dict, masks: dict) -> None:
        target = batch["modulation"]
        pred_on = output[:, PRESENCE] >= self.min_logit  # presence probability >= 0.5
        true_on = target[:, PRESENCE] > 0.5
        hits = pred_on & true_on
        self.tp += float(hits.sum())
        self.fp += float((pred_on & ~true_on).sum())
        self.fn += float((~pred_on & true_on).sum())
        self.amount_err += float((output[:, AMOUNT] - target[:, AMOUNT]).abs()[hits].double().sum())

    def result(self) -> dict:
        tp, fp, fn = self.tp, self.fp, self.fn
        return {"modulation_precision": ratio(tp, tp + fp), "modulation_recall": ratio(tp, tp + fn),
                "modulation_amount_mae": ratio(self.amount_err, tp),
                "modulation_tp": int(round(tp)), "modulation_fp": int(round(fp)), "modulation_fn": int(round(fn))}


HEAD = Head(name="modulation", build=build, loss=loss, weight=lambda c: c.weight_modulation,
            warmup=lambda c: c.modulation_warmup_epochs, decode=decode, metric=Metric, baseline=None)
