"""The training loss of the preset estimator: the heads' loss parts (`training.heads`), weighted, with masks.

Targets (a batch from `training.data.collate`, B rows):

    continuous   (B, n_cont)     float32  normalised [0, 1], registry.continuous order
    categorical  (B, n_cat)      int64    class index (raw - min), registry.categorical order
    wavetable    (B, 3)          int64    class per oscillator (0 = init table, k = catalog index k - 1)
    modulation   (B, 5, S, D)    float32  dense: presence {0,1}, amount [-1,1], bipolar {0,1}, power [-10,10],
                                          stereo {0,1}; S = 32 sources, D = 428 destinations

Model outputs: the forward dict, keyed by head (`training.heads` lists each head's output and its loss).

Masks (derived from the registry and the sampler, never hand lists) keep only what the sound can tell:
- a parameter of a module with an on-switch (`osc_2_on`, `reverb_on`, ...) is not heard when the target switch
  is 0, so its error is masked out; the switch itself is always learnt;
- at tiers 1-3 a control the sampler never varies (`datagen.sampler.varied_params`: volume, voice settings,
  the modules of higher tiers, ...) is the same in every row, so it is masked statically; tier 0 (real
  presets) keeps them all;
- a module heard only through modulation (LFOs, random generators, env 3-6: `Module.needs_modulation`) is
  heard in a row only when that row routes it somewhere (`routed_sources`): an unrouted LFO's rate changes
  nothing, and at tier 3 that is most LFOs of most rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import torch

from training.heads import HEADS

log = logging.getLogger(__name__)

TIERS = (0, 1, 2, 3)  # 0 = real presets (treated like tier 3)
NO_SWITCH = -1


@dataclass(frozen=True)
class LossConfig:
    label_smoothing: float = 0.1  # categorical and wavetable cross-entropy
    modulation_pos_weight: float = 100.0  # presence BCE: ~10 positive cells of 32 x 428 = 13,696
    modulation_warmup_epochs: float = 5.0  # modulation weight ramps 0 -> weight_modulation over this many epochs
    # the continuous head's per-value error: "l1" |pred - target| (its minimiser is the conditional median,
    # the MAE the metrics report), "l2" squared (the conditional mean; every checkpoint before 2026-12-03)
    continuous_error: str = "l1"
    power_scale: float = 10.0  # power errors are divided by this, so its MSE is on a [-1, 1] scale
    importance_min: float = 0.1  # clip range of the mean-1 importance weights (see `importance_weights`)
    importance_max: float = 10.0
    # each head's factor in the total loss (its `Head.weight` reads its field)
    weight_continuous: float = 1.0
    weight_categorical: float = 1.0
    weight_modulation: float = 1.0
    weight_wavetable: float = 1.0

    def __post_init__(self):
        from training.train import CONTINUOUS_ERRORS

        if self.continuous_error not in CONTINUOUS_ERRORS:
            raise ValueError(f"continuous_error must be one of {CONTINUOUS_ERRORS}, got {self.continuous_error!r}")


@dataclass(frozen=True, eq=False)
class MaskSpec:
    """Static mask data for one registry and tier. Switch columns index registry.categorical; -1 = none."""

    tier: int
    continuous_names: tuple[str, ...]
    categorical_names: tuple[str, ...]
    categorical_classes: tuple[int, ...]  # Param.n_classes per categorical column
    continuous_switch: torch.Tensor  # (n_cont,) int64: column of the module's on-switch, or -1
    categorical_switch: torch.Tensor  # (n_cat,) int64: same; an on-switch is -1 for itself
    continuous_heard: torch.Tensor  # (n_cont,) float32 0/1: 0 = never varied in the tier's data
    categorical_heard: torch.Tensor  # (n_cat,) float32 0/1
    continuous_source: torch.Tensor  # (n_cont,) int64: registry.sources index of a modulator's module, or -1
    categorical_source: torch.Tensor  # (n_cat,) int64: same
    n_sources: int  # len(registry.sources)


def build_mask_spec(registry, *, tier: int) -> MaskSpec:
    """The on-switch column, the static heard flag (varied by the sampler at this tier; everything at tier 0)
    and the modulation source (for modulators) of every continuous and categorical parameter."""
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
    from datagen.sampler import varied_params

    column = {p.name: i for i, p in enumerate(registry.categorical)}
    varied = None if tier == 0 else varied_params(tier, registry)
    source = {name: i for i, name in enumerate(registry.sources)}

    def switch(p) -> int:
        s = registry.module_of[p.name].on_switch
        return NO_SWITCH if s is None or s == p.name else column[s]

    def heard(p) -> float:
        return 1.0 if varied is None or p.name in varied else 0.0

    def modulator(p) -> int:
        m = registry.module_of[p.name]
        return source.get(m.name, NO_SWITCH) if m.needs_modulation else NO_SWITCH

    cont, cat = registry.continuous, registry.categorical
    return MaskSpec(
        tier=tier,
        continuous_names=tuple(p.name for p in cont),
        categorical_names=tuple(p.name for p in cat),
        categorical_classes=tuple(p.n_classes for p in cat),
        continuous_switch=torch.tensor([switch(p) for p in cont], dtype=torch.int64),
        categorical_switch=torch.tensor([switch(p) for p in cat], dtype=torch.int64),
        continuous_heard=torch.tensor([heard(p) for p in cont], dtype=torch.float32),
        categorical_heard=torch.tensor([heard(p) for p in cat], dtype=torch.float32),
        continuous_source=torch.tensor([modulator(p) for p in cont], dtype=torch.int64),
        categorical_source=torch.tensor([modulator(p) for p in cat], dtype=torch.int64),
        n_sources=len(registry.sources),
    )


def _switch_mask(switch: torch.Tensor, heard: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
    """(B, n) float 0/1 = heard * (target on-switch != 0, or 1 where there is no switch).
    switch (n,) int64 with -1 = none; heard (n,) float; categorical (B, n_cat) int targets."""
    on = (categorical != 0).to(heard.dtype)  # (B, n_cat); the switches are 0/1 controls
    on = torch.cat([on, on.new_ones(on.shape[0], 1)], dim=1)  # column n_cat: "no switch" is always on
    index = torch.where(switch < 0, on.shape[1] - 1, switch)
    return on[:, index] * heard


def _route_mask(source: torch.Tensor, routed: torch.Tensor | None) -> torch.Tensor | float:
    """(B, n) float 0/1 = 1 unless the parameter belongs to a modulator that the row does not route.
    source (n,) int64 with -1 = not a modulator; routed (B, S) 0/1 or None (every modulator counts as routed)."""
    if routed is None:
        return 1.0
    routed = torch.cat([routed.to(torch.float32), routed.new_ones(routed.shape[0], 1, dtype=torch.float32)], dim=1)
    return routed[:, torch.where(source < 0, routed.shape[1] - 1, source)]  # column S: "not a modulator"


def routed_sources(modulation: torch.Tensor) -> torch.Tensor:
    """(B, S) float 0/1: the sources a row routes anywhere. modulation: the dense (B, 5, S, D) target."""
    return (modulation[:, 0] > 0.5).any(dim=-1).to(torch.float32)


def masks(spec: MaskSpec, categorical_targets: torch.Tensor,
          routed: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-row masks: continuous (B, n_cont) and categorical (B, n_cat) float 0/1. categorical_targets
    (B, n_cat) int; routed (B, S) from `routed_sources` (None: every modulator counts as routed)."""
    dev = categorical_targets.device
    out = {}
    for kind in ("continuous", "categorical"):
        switched = _switch_mask(getattr(spec, f"{kind}_switch").to(dev), getattr(spec, f"{kind}_heard").to(dev),
                                categorical_targets)
        out[kind] = switched * _route_mask(getattr(spec, f"{kind}_source").to(dev), routed)
    return out


def importance_weights(raw: torch.Tensor | None, *, n: int, low: float = 0.1, high: float = 10.0) -> torch.Tensor:
    """(n,) float32 loss weights from the data set's `importance_continuous`: scaled to mean 1, then clipped
    to [low, high]. None -> ones (a warning is the caller's job).

    Why clip: the measured weights are dominated by envelope timing (env_1_delay is 82.6x the mean: a long
    delay silences the note), so unclipped a handful of controls would carry most of the continuous loss and
    the others would hardly be learnt. Clipping keeps the ordering of the measurement within a 100:1 range.
    The clipped weights are not renormalised (their mean drops slightly below 1)."""
    if raw is None:
        return torch.ones(n)
    w = torch.as_tensor(raw, dtype=torch.float32).flatten()
    if w.numel() != n:
        raise ValueError(f"importance has {w.numel()} weights, the registry has {n} continuous parameters")
    mean = w.mean()
    if not (torch.isfinite(w).all() and mean > 0):
        raise ValueError("importance weights must be finite with a positive mean")
    return (w / mean).clamp(low, high)


def modulation_ramp(epoch: float, warmup_epochs: float) -> float:
    """Linear warm-up factor in [0, 1]: 0 at epoch 0, 1 from `warmup_epochs` on (1 at once if warmup <= 0)."""
    if warmup_epochs <= 0:
        return 1.0
    return float(min(max(epoch / warmup_epochs, 0.0), 1.0))


class PresetLoss(torch.nn.Module):
    """Total loss = sum over heads of weight * head loss: w_c * continuous + w_k * categorical + w_w * wavetable
    + ramp(epoch) * w_m * modulation (each head's weight and ramp: its `Head`).

    forward returns a dict of 0-dim tensors: "loss" (differentiable) and, detached for logging, "loss/<head>"
    for every head (0 for a head missing from the outputs), "loss/<head>_<part>" for a head of several parts
    (modulation: presence, amount, power, bipolar, stereo; "loss/modulation" is their sum, before its weight),
    and "<head>_weight" for a ramped head ("modulation_weight": ramp * w_m, the factor applied to it)."""

    def __init__(self, *, spec: MaskSpec, predicted_categorical: Sequence[int],
                 importance: torch.Tensor | None, config: LossConfig = LossConfig()):
        super().__init__()
        n_cont, n_cat = len(spec.continuous_names), len(spec.categorical_names)
        predicted = [int(i) for i in predicted_categorical]
        if len(set(predicted)) != len(predicted) or any(not 0 <= i < n_cat for i in predicted):
            raise ValueError(f"predicted_categorical must be distinct column indices in [0, {n_cat})")
        if importance is None:
            log.warning("no importance weights in the data set (run `python -m datagen compute-weights`); "
                        "using uniform weights")
        self.spec = spec
        self.config = config
        self.predicted = tuple(predicted)
        self.register_buffer("importance", importance_weights(
            importance, n=n_cont, low=config.importance_min, high=config.importance_max))  # (n_cont,)

    def weight(self, head, epoch: float) -> float:
        """A head's factor in the total loss at `epoch` (fractional within an epoch)."""
        w = head.weight(self.config)
        return w if head.warmup is None else modulation_ramp(epoch, head.warmup(self.config)) * w

    def forward(self, outputs: dict, batch: dict, *, epoch: float) -> dict[str, torch.Tensor]:
        m = masks(self.spec, batch["categorical"], routed_sources(batch["modulation"]))
        parts = {name: head.loss(outputs[name], batch, m, self) for name, head in HEADS.items() if name in outputs}
        losses = {name: sum(p.values()) for name, p in parts.items()}  # each head's loss, before its weight
        weights = {name: self.weight(HEADS[name], epoch) for name in parts}
        total = sum(weights[name] * value for name, value in losses.items())
        out = {"loss": total}
        for name in HEADS:
            out[f"loss/{name}"] = losses[name].detach() if name in losses else total.new_zeros(())
            if len(parts.get(name, ())) > 1:
                out.update({f"loss/{name}_{k}": v.detach() for k, v in parts[name].items()})
        out.update({f"{name}_weight": total.new_tensor(weights[name]) for name in parts
                    if HEADS[name].warmup is not None})
        return out
