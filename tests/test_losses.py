"""training.losses: masks from the registry, and every loss part against a hand computation."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.heads.modulation import modulation_parts
from training.losses import (LossConfig, PresetLoss, build_mask_spec, importance_weights, masks, modulation_ramp,
                             routed_sources)
from training.metrics import MetricSums, metrics

LOG2 = math.log(2.0)
S, D = 32, 428


def cont_col(registry, name: str) -> int:
    return [p.name for p in registry.continuous].index(name)


def cat_col(registry, name: str) -> int:
    return [p.name for p in registry.categorical].index(name)


def switches_on(registry, b: int = 2) -> torch.Tensor:
    """(b, n_cat) int64 categorical targets: every on-switch 1, everything else class 0."""
    cat = torch.zeros(b, len(registry.categorical), dtype=torch.int64)
    for i, p in enumerate(registry.categorical):
        if p.name.endswith("_on") and registry.module_of[p.name].on_switch == p.name:
            cat[:, i] = 1
    return cat


def batch_and_outputs(registry, predicted: list[int], b: int = 2) -> tuple[dict, dict]:
    """A batch and outputs that match it exactly where possible: zero continuous and modulation error,
    zero categorical logits (so each CE is log(n_classes))."""
    cont = torch.full((b, len(registry.continuous)), 0.5)
    cat = switches_on(registry, b)
    batch = {"continuous": cont, "categorical": cat, "modulation": torch.zeros(b, 5, S, D)}
    outputs = {
        "continuous": cont.clone(),
        "categorical": [torch.zeros(b, registry.categorical[i].n_classes) for i in predicted],
        "modulation": torch.zeros(b, 5, S, D),
    }
    return batch, outputs


# ---------------------------------------------------------------------------------------------- masks


def test_mask_spec_from_registry(registry):
    spec = build_mask_spec(registry, tier=3)
    assert spec.continuous_switch.shape == (293,) and spec.categorical_switch.shape == (159,)
    # 15 modules with a switch hold 242 parameters; the 15 switches never mask themselves -> 227
    n_switched = int((spec.continuous_switch >= 0).sum() + (spec.categorical_switch >= 0).sum())
    assert n_switched == 227
    # real presets (tier 0) vary everything; each sampler tier varies more than the one below it
    unheard = [int((s.continuous_heard == 0).sum() + (s.categorical_heard == 0).sum())
               for s in (build_mask_spec(registry, tier=t) for t in (0, 1, 2, 3))]
    assert unheard[0] == 0 and unheard[1] > unheard[2] > unheard[3] > 0
    # lfo 8 x 12 + random 4 x 8 + env_3..6 4 x 9 = 164 parameters belong to modulators (sources)
    assert int((spec.continuous_source >= 0).sum() + (spec.categorical_source >= 0).sum()) == 164
    assert spec.continuous_source[cont_col(registry, "lfo_2_frequency")] == registry.sources.index("lfo_2")
    assert spec.continuous_source[cont_col(registry, "env_1_attack")] == -1
    assert spec.continuous_switch[cont_col(registry, "osc_2_level")] == cat_col(registry, "osc_2_on")
    assert spec.categorical_switch[cat_col(registry, "osc_2_on")] == -1
    with pytest.raises(ValueError, match="tier"):
        build_mask_spec(registry, tier=4)


def test_osc_2_masked_by_its_switch_and_switch_never_masked(registry):
    spec = build_mask_spec(registry, tier=0)  # real presets: no control is constant, only switches mask
    cat = switches_on(registry)
    cat[0, cat_col(registry, "osc_2_on")] = 0  # row 0: osc 2 off; row 1: on
    m = masks(spec, cat)
    assert m["continuous"][:, cont_col(registry, "osc_2_level")].tolist() == [0.0, 1.0]
    assert m["categorical"][:, cat_col(registry, "osc_2_destination")].tolist() == [0.0, 1.0]
    assert m["categorical"][:, cat_col(registry, "osc_2_on")].tolist() == [1.0, 1.0]
    # 17 continuous + 11 categorical osc_2 parameters (the switch excluded) are masked in row 0 only
    assert m["continuous"].sum(1).tolist() == [293 - 17, 293]
    assert m["categorical"].sum(1).tolist() == [159 - 11, 159]
    # every switch off: no switch is masked, every switched parameter is
    off = masks(spec, torch.zeros(1, 159, dtype=torch.int64))
    assert off["categorical"][0, cat_col(registry, "reverb_on")] == 1.0
    assert off["continuous"].sum() + off["categorical"].sum() == 293 + 159 - 227


def test_lfo_masked_at_tiers_1_2_only(registry):
    cat = switches_on(registry)
    for tier, expected in ((0, 1.0), (1, 0.0), (2, 0.0), (3, 1.0)):
        # routed=None counts every modulator as routed: this is the static (sampler) mask alone
        m = masks(build_mask_spec(registry, tier=tier), cat)
        assert m["continuous"][:, cont_col(registry, "lfo_1_frequency")].tolist() == [expected] * 2
        assert m["continuous"][:, cont_col(registry, "env_3_attack")].tolist() == [expected] * 2
        assert m["categorical"][:, cat_col(registry, "lfo_1_sync")].tolist() == [expected] * 2
        assert m["continuous"][:, cont_col(registry, "env_1_attack")].tolist() == [1.0] * 2  # env 1/2 are heard


def test_global_parameter_masked_only_where_the_sampler_keeps_it_constant(registry):
    off = torch.zeros(2, 159, dtype=torch.int64)  # every switch off
    for tier, expected in ((0, 1.0), (1, 0.0), (2, 0.0), (3, 0.0)):
        m = masks(build_mask_spec(registry, tier=tier), off)
        assert m["continuous"][:, cont_col(registry, "volume")].tolist() == [expected] * 2
        assert m["categorical"][:, cat_col(registry, "polyphony")].tolist() == [expected] * 2
    # what the sampler draws apart from the free parameters is learnt at every tier
    m = masks(build_mask_spec(registry, tier=1), off)
    assert m["categorical"][:, cat_col(registry, "osc_3_on")].tolist() == [1.0, 1.0]
    assert m["categorical"][:, cat_col(registry, "filter_2_on")].tolist() == [1.0, 1.0]


def test_modulator_heard_only_in_rows_that_route_it(registry):
    spec = build_mask_spec(registry, tier=3)
    cat = switches_on(registry)
    routed = torch.zeros(2, len(registry.sources))
    routed[1, registry.sources.index("lfo_1")] = 1.0  # row 1 routes lfo_1 somewhere, row 0 routes nothing
    m = masks(spec, cat, routed)
    assert m["continuous"][:, cont_col(registry, "lfo_1_frequency")].tolist() == [0.0, 1.0]
    assert m["categorical"][:, cat_col(registry, "lfo_1_sync")].tolist() == [0.0, 1.0]
    assert m["continuous"][:, cont_col(registry, "lfo_2_frequency")].tolist() == [0.0, 0.0]
    assert m["continuous"][:, cont_col(registry, "osc_1_level")].tolist() == [1.0, 1.0]  # not a modulator
    # the dense target and the stored slots name the same routed sources
    from training.data import routed_from_slots

    slots = -np.ones((2, 64, 6), np.float32)
    slots[1, 0, :2] = [registry.sources.index("lfo_1"), 3]
    dense = torch.zeros(2, 5, len(registry.sources), len(registry.destinations))
    dense[1, 0, registry.sources.index("lfo_1"), 3] = 1.0
    assert torch.equal(routed_sources(dense), routed)
    assert torch.equal(routed_from_slots(slots, n_sources=len(registry.sources)), routed)


# ------------------------------------------------------------------------------------------ continuous


@pytest.mark.parametrize("error, expected", [
    ("l2", (1.5 * 0.2**2 + 0.1**2 + 0.5 * 0.3**2) / (193 + 193 - 17)),  # = 0.115 / 369
    ("l1", (1.5 * 0.2 + 0.1 + 0.5 * 0.3) / (193 + 193 - 17)),  # = 0.55 / 369
])
def test_continuous_loss_by_hand(registry, error, expected):
    spec = build_mask_spec(registry, tier=0)
    a, b, g, hidden = (cont_col(registry, n) for n in ("osc_1_level", "volume", "filter_1_cutoff", "osc_2_level"))
    raw = torch.ones(293)
    raw[a], raw[b] = 1.5, 0.5  # mean exactly 1: weights are 1.5, 0.5, 1 elsewhere
    loss = PresetLoss(spec=spec, predicted_categorical=[], importance=raw, config=LossConfig(continuous_error=error))
    batch, out = batch_and_outputs(registry, [])
    batch["categorical"][1, cat_col(registry, "osc_2_on")] = 0
    out["continuous"][0, a] += 0.2  # weight 1.5
    out["continuous"][0, g] -= 0.1  # weight 1
    out["continuous"][1, b] += 0.3  # weight 0.5
    out["continuous"][1, hidden] += 0.5  # osc 2 off in row 1: masked
    r = loss(out, batch, epoch=0)
    # real-preset masks; no row routes a modulator, so its 100 continuous controls are masked in both rows
    assert r["loss/continuous"].item() == pytest.approx(expected, rel=1e-5)
    assert r["loss"].item() == pytest.approx(expected, rel=1e-5)  # everything else is 0 at epoch 0


# ----------------------------------------------------------------------------------------- categorical


def test_categorical_label_smoothing_and_mask(registry):
    spec = build_mask_spec(registry, tier=0)  # real presets: no control is constant; switches and routes mask
    dest, on, poly, sync = (cat_col(registry, n)
                            for n in ("osc_2_destination", "osc_2_on", "polyphony", "lfo_1_sync"))
    predicted = [dest, on, poly, sync]
    loss = PresetLoss(spec=spec, predicted_categorical=predicted, importance=None,
                      config=LossConfig(label_smoothing=0.1))
    batch, out = batch_and_outputs(registry, predicted)
    batch["categorical"][1, on] = 0  # row 1: osc 2 off -> its destination is masked there
    batch["categorical"][:, dest] = torch.tensor([3, 5])
    batch["categorical"][:, poly] = torch.tensor([7, 31])
    batch["categorical"][:, sync] = torch.tensor([2, 4])  # 5 classes
    # row 1 routes lfo_1 (to destination 0): its sync is heard there; row 0 routes nothing, so it is masked
    batch["modulation"][1, 0, registry.sources.index("lfo_1"), 0] = 1.0
    g = torch.Generator().manual_seed(0)
    out["categorical"] = [torch.randn(2, registry.categorical[i].n_classes, generator=g) for i in predicted]
    r = loss(out, batch, epoch=0)

    ce = [F.cross_entropy(z, batch["categorical"][:, i], label_smoothing=0.1, reduction="none")
          for z, i in zip(out["categorical"], predicted)]
    # 8 entries, 2 masked: (row 1, destination) as osc 2 is off, (row 0, lfo_1_sync) as lfo_1 is unrouted
    expected = (ce[0][0] + ce[1][0] + ce[1][1] + ce[2][0] + ce[2][1] + ce[3][1]) / 6
    assert r["loss/categorical"].item() == pytest.approx(expected.item(), rel=1e-6)

    # label smoothing in closed form: (1 - eps) * NLL(target) + eps * mean over classes of NLL
    logp = out["categorical"][2][0].log_softmax(0)
    assert ce[2][0].item() == pytest.approx((0.9 * -logp[7] - 0.1 * logp.mean()).item(), rel=1e-6)

    # a masked entry contributes nothing, however wrong
    out["categorical"][0][1] = torch.tensor([-1e4] * 5 + [1e4] * 9)  # (row 1, destination): osc 2 off
    out["categorical"][3][0] = torch.tensor([1e4, 1e4, -1e4, 1e4, 1e4])  # (row 0, lfo_1_sync): unrouted
    assert loss(out, batch, epoch=0)["loss/categorical"].item() == pytest.approx(expected.item(), rel=1e-6)

    # at tier 3 the sampler never varies polyphony: it is masked in both rows, the other 4 entries remain
    tier3 = PresetLoss(spec=build_mask_spec(registry, tier=3), predicted_categorical=predicted, importance=None,
                       config=LossConfig(label_smoothing=0.1))
    expected3 = (ce[0][0] + ce[1][0] + ce[1][1] + ce[3][1]) / 4
    assert tier3(out, batch, epoch=0)["loss/categorical"].item() == pytest.approx(expected3.item(), rel=1e-6)


def test_categorical_uniform_logits_give_log_classes(registry):
    predicted = [cat_col(registry, n) for n in ("osc_2_destination", "polyphony")]  # 14 and 32 classes
    loss = PresetLoss(spec=build_mask_spec(registry, tier=0), predicted_categorical=predicted, importance=None)
    batch, out = batch_and_outputs(registry, predicted)
    r = loss(out, batch, epoch=0)
    # tier 0 (real presets): all 4 entries count, 2 rows of each
    assert r["loss/categorical"].item() == pytest.approx((math.log(14) + math.log(32)) / 2, rel=1e-6)
    # tier 3: polyphony is never varied, so it is masked in both rows; only the 2 destination entries count
    loss = PresetLoss(spec=build_mask_spec(registry, tier=3), predicted_categorical=predicted, importance=None)
    assert loss(out, batch, epoch=0)["loss/categorical"].item() == pytest.approx(math.log(14), rel=1e-6)
    with pytest.raises(ValueError, match="categorical heads"):
        loss({**out, "categorical": out["categorical"][:1]}, batch, epoch=0)
    with pytest.raises(ValueError, match="distinct"):
        PresetLoss(spec=build_mask_spec(registry, tier=3), predicted_categorical=[3, 3], importance=None)


# ------------------------------------------------------------------------------------------ modulation


def test_modulation_without_active_cells_is_presence_only():
    out = torch.zeros(2, 5, S, D)
    out[:, 1], out[:, 3], out[:, 2] = 0.7, -6.0, 3.0  # wrong amounts/powers/bipolar: no active cell, no cost
    parts = modulation_parts(out, torch.zeros(2, 5, S, D), config=LossConfig())
    assert parts["presence"].item() == pytest.approx(LOG2, rel=1e-6)  # logit 0, target 0: -log(1 - 1/2)
    for k in ("amount", "power", "bipolar", "stereo"):
        assert parts[k].item() == 0.0


def test_modulation_one_active_cell_by_hand():
    target, out = torch.zeros(2, 5, S, D), torch.zeros(2, 5, S, D)
    target[0, :, 3, 7] = torch.tensor([1.0, 0.5, 1.0, 4.0, 0.0])  # presence, amount, bipolar, power, stereo
    out[0, :, 3, 7] = torch.tensor([0.0, 0.2, 2.0, -1.0, 0.0])  # presence logit 0, bipolar logit 2
    parts = modulation_parts(out, target, config=LossConfig(modulation_pos_weight=100.0, power_scale=10.0))
    n = 2 * S * D
    assert parts["presence"].item() == pytest.approx(LOG2 * (n - 1 + 100) / n, rel=1e-6)
    assert parts["amount"].item() == pytest.approx((0.2 - 0.5) ** 2, rel=1e-6)
    assert parts["power"].item() == pytest.approx(((-1.0 - 4.0) / 10.0) ** 2, rel=1e-6)  # 0.25
    assert parts["bipolar"].item() == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-6)
    assert parts["stereo"].item() == pytest.approx(LOG2, rel=1e-6)


def test_warmup_ramp(registry):
    assert [modulation_ramp(e, 5) for e in (0, 2.5, 5, 10)] == [0.0, 0.5, 1.0, 1.0]
    assert modulation_ramp(0, 0) == 1.0
    loss = PresetLoss(spec=build_mask_spec(registry, tier=3), predicted_categorical=[], importance=None,
                      config=LossConfig(weight_modulation=2.0, modulation_warmup_epochs=5))
    batch, out = batch_and_outputs(registry, [])
    for epoch, weight in ((0, 0.0), (2.5, 1.0), (5, 2.0), (10, 2.0)):
        r = loss(out, batch, epoch=epoch)
        assert r["modulation_weight"].item() == weight
        assert r["loss"].item() == pytest.approx(weight * LOG2, rel=1e-6)  # presence log 2 is the only error


# ------------------------------------------------------------------------------------------ importance


def test_importance_none_warns_once_and_is_uniform(registry, caplog):
    spec = build_mask_spec(registry, tier=3)
    batch, out = batch_and_outputs(registry, [])
    out["continuous"][0, :3] += torch.tensor([0.1, 0.2, 0.3])
    with caplog.at_level(logging.WARNING, logger="training.losses"):
        loss = PresetLoss(spec=spec, predicted_categorical=[], importance=None)
        first = loss(out, batch, epoch=1)
        loss(out, batch, epoch=2)
    warned = [r for r in caplog.records if "no importance weights" in r.getMessage()]
    assert len(warned) == 1
    assert "python -m datagen compute-weights" in warned[0].getMessage()
    uniform = PresetLoss(spec=spec, predicted_categorical=[], importance=torch.ones(293))
    assert torch.equal(loss.importance, torch.ones(293))
    assert first["loss/continuous"].item() == uniform(out, batch, epoch=1)["loss/continuous"].item()


def test_importance_normalised_then_clipped():
    w = importance_weights(torch.tensor([0.0, 1.0, 1.0, 38.0]), n=4)  # mean 10 -> 0, .1, .1, 3.8
    assert w.tolist() == pytest.approx([0.1, 0.1, 0.1, 3.8], rel=1e-6)
    w = importance_weights(torch.tensor([1.0] * 19 + [381.0]), n=20)  # mean 20 -> 0.05 x 19, 19.05
    assert w.tolist() == pytest.approx([0.1] * 19 + [10.0], rel=1e-6)
    assert importance_weights(None, n=3).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="3 weights"):
        importance_weights(torch.ones(3), n=4)


# ------------------------------------------------------------------------------------ total, gradients


def test_total_is_weighted_sum_and_gradients_flow(registry):
    # polyphony is never varied at tier 1: its head must get no gradient; the other three are heard
    predicted = [cat_col(registry, n) for n in ("osc_1_destination", "filter_1_on", "filter_1_model", "polyphony")]
    cfg = LossConfig(weight_continuous=2.0, weight_categorical=0.5, weight_modulation=3.0)
    raw = torch.linspace(0.01, 5.0, 293)
    loss = PresetLoss(spec=build_mask_spec(registry, tier=1), predicted_categorical=predicted,
                      importance=raw, config=cfg)
    g = torch.Generator().manual_seed(1)
    batch, _ = batch_and_outputs(registry, predicted)
    batch["continuous"] = torch.rand(2, 293, generator=g)
    batch["modulation"][0, :, 5, 9] = torch.tensor([1.0, -0.4, 0.0, 2.0, 1.0])
    leaves = {"continuous": torch.randn(2, 293, generator=g, requires_grad=True),
              "categorical": [torch.randn(2, registry.categorical[i].n_classes, generator=g, requires_grad=True)
                              for i in predicted],
              "modulation": torch.randn(2, 5, S, D, generator=g, requires_grad=True)}
    mod = leaves["modulation"]
    out = {"continuous": leaves["continuous"].sigmoid(), "categorical": leaves["categorical"],
           "modulation": torch.stack([mod[:, 0], mod[:, 1].tanh(), mod[:, 2], 10 * mod[:, 3].tanh(), mod[:, 4]], 1)}
    r = loss(out, batch, epoch=2.5)  # ramp 0.5 -> modulation weight 1.5
    assert r["modulation_weight"].item() == 1.5
    parts = sum(r[f"loss/modulation_{k}"] for k in ("presence", "amount", "power", "bipolar", "stereo"))
    assert r["loss/modulation"].item() == pytest.approx(parts.item(), rel=1e-6)
    expected = 2.0 * r["loss/continuous"] + 0.5 * r["loss/categorical"] + 1.5 * r["loss/modulation"]
    assert r["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert all(r[k].item() > 0 for k in ("loss/continuous", "loss/categorical", "loss/modulation_amount"))

    r["loss"].backward()
    grads = [leaves["continuous"].grad, mod.grad, *(z.grad for z in leaves["categorical"][:3])]
    assert all(gr is not None and torch.isfinite(gr).all() and gr.abs().sum() > 0 for gr in grads)
    assert torch.equal(leaves["categorical"][3].grad, torch.zeros(2, 32))  # polyphony: constant at tier 1
    assert mod.grad[0, 1, 5, 9] != 0 and mod.grad[0, 1, 5, 10] == 0  # amount: active cell only
    lfo = cont_col(registry, "lfo_1_frequency")
    assert leaves["continuous"].grad[:, lfo].tolist() == [0.0, 0.0]  # tier 1: LFOs unheard
    # row 0 routes source 5 (env_5), but tier 1 never varies env 5: the static mask wins over the route
    assert registry.sources[5] == "env_5"
    assert leaves["continuous"].grad[:, cont_col(registry, "env_5_attack")].tolist() == [0.0, 0.0]


# --------------------------------------------------------------------------------------------- metrics


def test_metrics_by_hand(registry):
    spec = build_mask_spec(registry, tier=3)
    lfo_1 = registry.sources.index("lfo_1")
    dest, model, sync = (cat_col(registry, n) for n in ("osc_2_destination", "filter_1_model", "lfo_1_sync"))
    batch, out = batch_and_outputs(registry, [dest, model, sync])
    batch["categorical"][1, cat_col(registry, "osc_2_on")] = 0
    # presence: true cells a, b, c; predicted a, b, d -> tp 2, fp 1, fn 1; amount errors on tp 0.1, 0.3.
    # Row 0 routes aftertouch and env_1 (no modulator controls), row 1 routes lfo_1 (cell c).
    batch["modulation"][0, 0, 0, 0] = batch["modulation"][0, 0, 1, 1] = batch["modulation"][1, 0, lfo_1, 2] = 1.0
    out["modulation"][:, 0] = -1.0
    out["modulation"][0, 0, 0, 0] = out["modulation"][0, 0, 1, 1] = out["modulation"][1, 0, 3, 3] = 1.0
    out["modulation"][0, 1, 0, 0], out["modulation"][0, 1, 1, 1] = 0.1, -0.3
    out["modulation"][1, 1, lfo_1, 2] = 0.9  # a false negative's amount is not counted
    # continuous: tier 3 varies 276 of the 293 controls. Row 0: 276 - 100 modulator controls (none routed) = 176;
    # row 1: 276 - 100 + 7 (lfo_1's continuous controls, routed) - 16 (osc 2's varied controls, osc 2 off) = 167
    out["continuous"][0, cont_col(registry, "osc_1_level")] += 0.3  # counted: 0.09
    out["continuous"][1, cont_col(registry, "lfo_1_frequency")] += 0.2  # counted (lfo_1 routed in row 1): 0.04
    out["continuous"][0, cont_col(registry, "lfo_1_frequency")] += 0.5  # masked: row 0 does not route lfo_1
    out["continuous"][:, cont_col(registry, "volume")] += 0.4  # masked: the sampler never varies volume
    # categorical: destination in row 0 only (osc 2 off in row 1), filter model in both, lfo_1_sync in row 1 only
    batch["categorical"][:, model] = torch.tensor([0, 4])  # logits all 0 -> argmax 0: row 0 right, row 1 wrong
    batch["categorical"][:, sync] = torch.tensor([3, 0])  # row 0 wrong but masked (lfo_1 unrouted), row 1 right
    out["categorical"][0][1, 2] = 5.0  # masked (osc 2 off in row 1): not counted
    r = metrics(out, batch, spec, [dest, model, sync])
    assert r["continuous_mse"] == pytest.approx(0.13 / 343, rel=1e-5) and r["continuous_count"] == 343
    # 4 counted: destination row 0 ok, filter model 1 of 2, lfo_1_sync row 1 ok
    assert r["categorical_count"] == 4 and r["categorical_accuracy"] == pytest.approx(3 / 4)
    assert (r["modulation_tp"], r["modulation_fp"], r["modulation_fn"]) == (2, 1, 1)
    assert r["modulation_precision"] == pytest.approx(2 / 3) and r["modulation_recall"] == pytest.approx(2 / 3)
    assert r["modulation_amount_mae"] == pytest.approx(0.2, rel=1e-6)
    # read with the training pos_weight, a logit of 1 is probability sigmoid(1 - log 100) = 0.03: no connection
    weighted = MetricSums(registry=None, spec=spec, predicted_categorical=[dest, model, sync], pos_weight=100.0)
    weighted.update(out, batch)
    w = weighted.result()
    assert (w["modulation_tp"], w["modulation_fp"], w["modulation_fn"]) == (0, 0, 3)
    out["modulation"][0, 0, 0, 0] = math.log(100.0)  # probability 0.5: counted
    weighted = MetricSums(registry=None, spec=spec, predicted_categorical=[dest, model, sync], pos_weight=100.0)
    weighted.update(out, batch)
    assert (weighted.result()["modulation_tp"], weighted.result()["modulation_fn"]) == (1, 2)


def test_wavetable_loss_counts_only_oscillators_that_are_on(registry):
    import torch
    import torch.nn.functional as F

    from training.losses import LossConfig, PresetLoss, build_mask_spec

    spec = build_mask_spec(registry, tier=3)
    loss = PresetLoss(spec=spec, predicted_categorical=[], importance=torch.ones(len(spec.continuous_names)),
                      config=LossConfig(label_smoothing=0.0))
    b, n_cont, n_cat = 2, len(spec.continuous_names), len(spec.categorical_names)
    cat = torch.zeros(b, n_cat, dtype=torch.int64)
    on = [spec.categorical_names.index(f"osc_{i}_on") for i in (1, 2, 3)]
    cat[0, on[0]] = 1  # only oscillator 1 of row 0 is on
    logits = [torch.randn(b, 5) for _ in range(3)]
    target = torch.tensor([[2, 3, 4], [0, 1, 2]])
    batch = {"continuous": torch.zeros(b, n_cont), "categorical": cat, "wavetable": target,
             "modulation": torch.zeros(b, 5, 32, 428)}
    outputs = {"continuous": torch.zeros(b, n_cont), "categorical": [], "wavetable": logits,
               "modulation": torch.full((b, 5, 32, 428), -30.0)}
    parts = loss(outputs, batch, epoch=0.0)
    expected = F.cross_entropy(logits[0][:1], target[0, :1])
    assert parts["loss/wavetable"] == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("tier", [1, 2, 3])
def test_varied_params_covers_every_control_the_sampler_changes(registry, tier):
    """`varied_params` lists what `Sampler.sample` draws; a control the sampler changes but the list misses
    would be masked out of the loss. 64 presets per tier: every control that differs from init is listed."""
    from datagen.dataset import as_stored
    from datagen.preset import init_preset
    from datagen.sampler import Sampler, SamplerConfig, varied_params

    init = as_stored(init_preset(registry))  # the sampler's presets are stored values (float32) too
    sampler = Sampler(SamplerConfig(tier=tier, seed=3), registry=registry)
    changed = set()
    for i in range(64):
        p = sampler.sample(i)
        changed |= {k for k, v in p.continuous.items() if v != init.continuous[k]}
        changed |= {k for k, v in p.categorical.items() if v != init.categorical[k]}
    constant_zero = {f"osc_{i}_random_phase" for i in (1, 2, 3)}  # set to 0 in every preset: one value, not varied
    assert changed - constant_zero <= varied_params(tier, registry)
    assert len(changed & varied_params(tier, registry)) > 0.9 * len(varied_params(tier, registry))


def test_masked_cross_entropy_equals_one_cross_entropy_per_head():
    """All heads in one padded log-softmax: the value and gradients of F.cross_entropy head by head (sizes from
    2 to the 128-class limit), masked; an out-of-range class is an error, not a silent -inf."""
    from training.heads.base import masked_cross_entropy

    torch.manual_seed(0)
    sizes = [2, 5, 128, 3]
    logits = [torch.randn(6, n, requires_grad=True) for n in sizes]
    targets = torch.stack([torch.randint(0, n, (6,)) for n in sizes], dim=1)
    mask = (torch.rand(6, 4) > 0.3).float()
    fast = masked_cross_entropy(logits, targets, mask, smoothing=0.1)
    ce = torch.stack([F.cross_entropy(z, targets[:, i], label_smoothing=0.1, reduction="none")
                      for i, z in enumerate(logits)], dim=1)
    slow = (mask * ce).sum() / mask.sum()
    assert fast.item() == pytest.approx(slow.item(), rel=1e-6)
    for a, b in zip(torch.autograd.grad(fast, logits), torch.autograd.grad(slow, logits)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert masked_cross_entropy([], targets[:, :0], mask[:, :0], smoothing=0.1).item() == 0.0
    with pytest.raises(ValueError, match="out of range"):
        masked_cross_entropy(logits, targets.clone().index_fill_(1, torch.tensor([0]), 2), mask, smoothing=0.1)
