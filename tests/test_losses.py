"""training.losses: masks from the registry, and every loss part against a hand computation."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import (LossConfig, PresetLoss, build_mask_spec, importance_weights, masks, metrics,
                             modulation_parts, modulation_ramp)

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
    # lfo 8 x 12 + random 4 x 8 + env_3..6 4 x 9 = 164 parameters are unheard at tiers 1-2
    for tier, unheard in ((0, 0), (1, 164), (2, 164), (3, 0)):
        s = build_mask_spec(registry, tier=tier)
        assert int((s.continuous_heard == 0).sum() + (s.categorical_heard == 0).sum()) == unheard
    assert spec.continuous_switch[cont_col(registry, "osc_2_level")] == cat_col(registry, "osc_2_on")
    assert spec.categorical_switch[cat_col(registry, "osc_2_on")] == -1
    with pytest.raises(ValueError, match="tier"):
        build_mask_spec(registry, tier=4)


def test_osc_2_masked_by_its_switch_and_switch_never_masked(registry):
    spec = build_mask_spec(registry, tier=3)
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
        m = masks(build_mask_spec(registry, tier=tier), cat)
        assert m["continuous"][:, cont_col(registry, "lfo_1_frequency")].tolist() == [expected] * 2
        assert m["continuous"][:, cont_col(registry, "env_3_attack")].tolist() == [expected] * 2
        assert m["categorical"][:, cat_col(registry, "lfo_1_sync")].tolist() == [expected] * 2
        assert m["continuous"][:, cont_col(registry, "env_1_attack")].tolist() == [1.0] * 2  # env 1/2 are heard


def test_global_parameter_never_masked(registry):
    off = torch.zeros(2, 159, dtype=torch.int64)  # every switch off
    for tier in (0, 1, 2, 3):
        m = masks(build_mask_spec(registry, tier=tier), off)
        assert m["continuous"][:, cont_col(registry, "volume")].tolist() == [1.0, 1.0]
        assert m["categorical"][:, cat_col(registry, "polyphony")].tolist() == [1.0, 1.0]


# ------------------------------------------------------------------------------------------ continuous


def test_continuous_loss_by_hand(registry):
    spec = build_mask_spec(registry, tier=3)
    a, b, g, hidden = (cont_col(registry, n) for n in ("osc_1_level", "volume", "filter_1_cutoff", "osc_2_level"))
    raw = torch.ones(293)
    raw[a], raw[b] = 1.5, 0.5  # mean exactly 1: weights are 1.5, 0.5, 1 elsewhere
    loss = PresetLoss(spec=spec, predicted_categorical=[], importance=raw)
    batch, out = batch_and_outputs(registry, [])
    batch["categorical"][1, cat_col(registry, "osc_2_on")] = 0
    out["continuous"][0, a] += 0.2  # weight 1.5
    out["continuous"][0, g] -= 0.1  # weight 1
    out["continuous"][1, b] += 0.3  # weight 0.5
    out["continuous"][1, hidden] += 0.5  # osc 2 off in row 1: masked
    r = loss(out, batch, epoch=0)
    expected = (1.5 * 0.2**2 + 0.1**2 + 0.5 * 0.3**2) / (293 + 293 - 17)  # = 0.115 / 569
    assert r["loss/continuous"].item() == pytest.approx(expected, rel=1e-5)
    assert r["loss"].item() == pytest.approx(expected, rel=1e-5)  # everything else is 0 at epoch 0


# ----------------------------------------------------------------------------------------- categorical


def test_categorical_label_smoothing_and_mask(registry):
    spec = build_mask_spec(registry, tier=3)
    dest, on, poly = (cat_col(registry, n) for n in ("osc_2_destination", "osc_2_on", "polyphony"))
    predicted = [dest, on, poly]
    loss = PresetLoss(spec=spec, predicted_categorical=predicted, importance=None,
                      config=LossConfig(label_smoothing=0.1))
    batch, out = batch_and_outputs(registry, predicted)
    batch["categorical"][1, on] = 0  # row 1: osc 2 off -> its destination is masked there
    batch["categorical"][:, dest] = torch.tensor([3, 5])
    batch["categorical"][:, poly] = torch.tensor([7, 31])
    g = torch.Generator().manual_seed(0)
    out["categorical"] = [torch.randn(2, registry.categorical[i].n_classes, generator=g) for i in predicted]
    r = loss(out, batch, epoch=0)

    ce = [F.cross_entropy(z, batch["categorical"][:, i], label_smoothing=0.1, reduction="none")
          for z, i in zip(out["categorical"], predicted)]
    expected = (ce[0][0] + ce[1][0] + ce[1][1] + ce[2][0] + ce[2][1]) / 5  # (row 1, destination) masked
    assert r["loss/categorical"].item() == pytest.approx(expected.item(), rel=1e-6)

    # label smoothing in closed form: (1 - eps) * NLL(target) + eps * mean over classes of NLL
    logp = out["categorical"][2][0].log_softmax(0)
    assert ce[2][0].item() == pytest.approx((0.9 * -logp[7] - 0.1 * logp.mean()).item(), rel=1e-6)

    # a masked entry contributes nothing, however wrong
    out["categorical"][0][1] = torch.tensor([-1e4] * 5 + [1e4] * 9)
    assert loss(out, batch, epoch=0)["loss/categorical"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_categorical_uniform_logits_give_log_classes(registry):
    predicted = [cat_col(registry, n) for n in ("osc_2_destination", "polyphony")]  # 14 and 32 classes
    loss = PresetLoss(spec=build_mask_spec(registry, tier=3), predicted_categorical=predicted, importance=None)
    batch, out = batch_and_outputs(registry, predicted)
    r = loss(out, batch, epoch=0)
    assert r["loss/categorical"].item() == pytest.approx((math.log(14) + math.log(32)) / 2, rel=1e-6)
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
    predicted = [cat_col(registry, n) for n in ("osc_1_destination", "filter_1_on", "polyphony")]
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
    grads = [leaves["continuous"].grad, mod.grad, *(z.grad for z in leaves["categorical"])]
    assert all(gr is not None and torch.isfinite(gr).all() and gr.abs().sum() > 0 for gr in grads)
    assert mod.grad[0, 1, 5, 9] != 0 and mod.grad[0, 1, 5, 10] == 0  # amount: active cell only
    lfo = cont_col(registry, "lfo_1_frequency")
    assert leaves["continuous"].grad[:, lfo].tolist() == [0.0, 0.0]  # tier 1: LFOs unheard


# --------------------------------------------------------------------------------------------- metrics


def test_metrics_by_hand(registry):
    spec = build_mask_spec(registry, tier=3)
    dest, poly = cat_col(registry, "osc_2_destination"), cat_col(registry, "polyphony")
    batch, out = batch_and_outputs(registry, [dest, poly])
    batch["categorical"][1, cat_col(registry, "osc_2_on")] = 0
    out["continuous"][0, 0] += 0.3  # (0.09) / (293 + 276) unmasked entries
    batch["categorical"][:, poly] = torch.tensor([0, 4])  # logits all 0 -> argmax 0: row 0 right, row 1 wrong
    out["categorical"][0][1, 2] = 5.0  # masked (osc 2 off in row 1): not counted
    # presence: true cells a, b, c; predicted a, b, d -> tp 2, fp 1, fn 1; amount errors on tp 0.1, 0.3
    batch["modulation"][0, 0, 0, 0] = batch["modulation"][0, 0, 1, 1] = batch["modulation"][1, 0, 2, 2] = 1.0
    out["modulation"][:, 0] = -1.0
    out["modulation"][0, 0, 0, 0] = out["modulation"][0, 0, 1, 1] = out["modulation"][1, 0, 3, 3] = 1.0
    out["modulation"][0, 1, 0, 0], out["modulation"][0, 1, 1, 1] = 0.1, -0.3
    out["modulation"][1, 1, 2, 2] = 0.9  # a false negative's amount is not counted
    r = metrics(out, batch, spec, [dest, poly])
    assert r["continuous_mse"] == pytest.approx(0.09 / 569, rel=1e-5) and r["continuous_count"] == 569
    assert r["categorical_count"] == 3 and r["categorical_accuracy"] == pytest.approx(2 / 3)  # dest 0 ok, poly 1/2
    assert (r["modulation_tp"], r["modulation_fp"], r["modulation_fn"]) == (2, 1, 1)
    assert r["modulation_precision"] == pytest.approx(2 / 3) and r["modulation_recall"] == pytest.approx(2 / 3)
    assert r["modulation_amount_mae"] == pytest.approx(0.2, rel=1e-6)


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
