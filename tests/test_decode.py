"""training.decode in closed form: hand-built forward dicts (no training) -> presets, confidences, routes."""

import json
import math

import numpy as np
import pytest
import torch

from datagen.preset import Modulation, Preset, init_preset
from datagen.registry import MODULATION_SLOTS
from datagen.render import Renderer
from datagen.wavetables import default_catalog
from training.decode import decode
from training.model import model_config_for


@pytest.fixture(scope="module")
def catalog():
    return default_catalog()


@pytest.fixture(scope="module")
def mc(registry, catalog):
    return model_config_for(registry, n_wavetables=len(catalog) + 1)


def blank(registry, mc, b=1) -> dict:
    """A forward dict for a batch of b: continuous 0.5, flat categorical / wavetable logits (argmax = class 0),
    presence logit -5 everywhere (no connection), the other modulation channels 0."""
    mod = torch.zeros(b, 5, mc.n_sources, mc.n_destinations)
    mod[:, 0] = -5.0
    return {
        "continuous": torch.full((b, mc.n_continuous), 0.5),
        "categorical": [torch.zeros(b, n) for n in mc.categorical_classes],
        "wavetable": [torch.zeros(b, mc.n_wavetables) for _ in range(3)],
        "modulation": mod,
    }


def run(outputs, registry, catalog, mc, **kw):
    return decode(outputs, registry=registry, catalog=catalog, predicted_categorical=mc.predicted_categorical, **kw)


def cell(registry, source, destination) -> tuple[int, int]:
    return registry.sources.index(source), registry.destinations.index(destination)


def f32(x: float) -> float:
    return float(np.float32(x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# (source, destination): (presence, amount, bipolar logit, power, stereo logit)
ROUTES = {
    ("env_2", "filter_1_cutoff"): (1.0, 1.7, 0.0, 12.0, -0.01),  # amount and power clipped; logit 0 -> True
    ("lfo_1", "osc_1_level"): (3.0, -0.3, -0.01, -3.0, 0.0),
    ("macro_control_1", "modulation_1_amount"): (0.2, -2.5, 2.0, -15.0, -3.0),
    ("random_1", "osc_2_pan"): (2.0, 0.4, -3.0, 0.5, 4.0),
}


def with_routes(outputs, registry, routes=ROUTES, b=0):
    for (src, dst), values in routes.items():
        s, d = cell(registry, src, dst)
        for channel, v in enumerate(values):
            outputs["modulation"][b, channel, s, d] = v
    return outputs


def test_presence_cells_become_connections_most_confident_first(registry, catalog, mc):
    out = with_routes(blank(registry, mc), registry)
    s, d = cell(registry, "lfo_2", "filter_2_cutoff")
    out["modulation"][0, 0, s, d] = -0.01  # just under the 0.5 presence threshold: no connection
    (dec,) = run(out, registry, catalog, mc)
    assert dec.preset.modulations == (
        Modulation(source="lfo_1", destination="osc_1_level", amount=f32(-0.3), bipolar=False, power=-3.0,
                   stereo=True),
        Modulation(source="random_1", destination="osc_2_pan", amount=f32(0.4), bipolar=False, power=0.5,
                   stereo=True),
        Modulation(source="env_2", destination="filter_1_cutoff", amount=1.0, bipolar=True, power=10.0,
                   stereo=False),
        Modulation(source="macro_control_1", destination="modulation_1_amount", amount=-1.0, bipolar=True,
                   power=-10.0, stereo=False),
    )
    assert dec.modulation_confidence == pytest.approx([sigmoid(3.0), sigmoid(2.0), sigmoid(1.0), sigmoid(0.2)],
                                                      abs=1e-6)


def test_more_than_64_cells_keep_the_most_confident(registry, catalog, mc):
    out = blank(registry, mc)
    rng = np.random.default_rng(0)
    flat = rng.choice(mc.n_sources * mc.n_destinations, size=70, replace=False)  # 70 distinct cells, any order
    logits = 0.1 * (1 + rng.permutation(70))  # 0.1 .. 7.0, all above the threshold, distinct
    cells = [divmod(int(i), mc.n_destinations) for i in flat]
    for (s, d), z in zip(cells, logits):
        out["modulation"][0, 0, s, d] = float(z)
    (dec,) = run(out, registry, catalog, mc)
    assert len(dec.preset.modulations) == MODULATION_SLOTS == 64
    ranked = sorted(zip(logits, cells), reverse=True)[:64]  # the six weakest (0.1 .. 0.6) are dropped
    assert [(m.source, m.destination) for m in dec.preset.modulations] == \
        [(registry.sources[s], registry.destinations[d]) for _, (s, d) in ranked]
    assert dec.modulation_confidence == pytest.approx([sigmoid(z) for z, _ in ranked], abs=1e-6)
    assert list(dec.modulation_confidence) == sorted(dec.modulation_confidence, reverse=True)
    (few,) = run(out, registry, catalog, mc, max_connections=5)
    assert [(m.source, m.destination) for m in few.preset.modulations] == \
        [(registry.sources[s], registry.destinations[d]) for _, (s, d) in ranked[:5]]


def test_threshold_argument(registry, catalog, mc):
    out = with_routes(blank(registry, mc), registry)
    (strict,) = run(out, registry, catalog, mc, threshold=sigmoid(1.5))  # keeps logits 3 and 2 only
    assert [(m.source, m.destination) for m in strict.preset.modulations] == \
        [("lfo_1", "osc_1_level"), ("random_1", "osc_2_pan")]
    (nothing,) = run(out, registry, catalog, mc, threshold=0.99)  # sigmoid(3) = 0.953
    assert nothing.preset.modulations == () and nothing.modulation_confidence == ()
    (everything,) = run(out, registry, catalog, mc, threshold=0.0)  # every cell passes: capped at 64
    assert len(everything.preset.modulations) == 64
    assert [(m.source, m.destination) for m in everything.preset.modulations[:4]] == \
        [("lfo_1", "osc_1_level"), ("random_1", "osc_2_pan"), ("env_2", "filter_1_cutoff"),
         ("macro_control_1", "modulation_1_amount")]
    assert everything.modulation_confidence[4:] == pytest.approx([sigmoid(-5.0)] * 60, abs=1e-7)


def test_categorical_argmax_and_softmax_confidence(registry, catalog, mc):
    names = [registry.categorical[i].name for i in mc.predicted_categorical]
    head = {name: k for k, name in enumerate(names)}
    out = blank(registry, mc, b=2)
    out["categorical"][head["filter_1_on"]][0] = torch.tensor([0.0, math.log(3)])  # softmax: [0.25, 0.75]
    out["categorical"][head["filter_1_on"]][1] = torch.tensor([math.log(3), 0.0])
    dest = torch.zeros(14)
    dest[5] = 2.0
    out["categorical"][head["osc_1_destination"]][0] = dest
    first, second = run(out, registry, catalog, mc)
    assert first.preset.categorical["filter_1_on"] == 1 and second.preset.categorical["filter_1_on"] == 0
    assert first.confidence["filter_1_on"] == pytest.approx(0.75) == second.confidence["filter_1_on"]
    assert first.preset.categorical["osc_1_destination"] == 5
    assert first.confidence["osc_1_destination"] == pytest.approx(math.exp(2) / (math.exp(2) + 13))
    assert second.preset.categorical["osc_1_destination"] == 0  # flat logits: the first class, 1 / 14
    assert second.confidence["osc_1_destination"] == pytest.approx(1 / 14)
    assert first.preset.categorical["oversampling"] == 0 and first.confidence["oversampling"] == pytest.approx(0.25)
    assert set(first.confidence) == set(names) and len(names) == len(registry.categorical) - 5
    assert set(first.preset.categorical) == {p.name for p in registry.categorical}


def test_unpredicted_categoricals_keep_the_base_value(registry, catalog, mc, init):
    unpredicted = [p.name for i, p in enumerate(registry.categorical) if i not in set(mc.predicted_categorical)]
    assert sorted(unpredicted) == ["effect_chain_order", "osc_1_transpose_quantize", "osc_2_transpose_quantize",
                                   "osc_3_transpose_quantize", "sample_transpose_quantize"]
    (dec,) = run(blank(registry, mc), registry, catalog, mc)
    assert {n: dec.preset.categorical[n] for n in unpredicted} == {n: init.categorical[n] for n in unpredicted}
    assert not set(unpredicted) & set(dec.confidence)
    base = init.with_values(effect_chain_order=12345, osc_2_transpose_quantize=77, filter_1_on=1)
    (based,) = run(blank(registry, mc), registry, catalog, mc, base=base)
    assert based.preset.categorical["effect_chain_order"] == 12345
    assert based.preset.categorical["osc_2_transpose_quantize"] == 77
    assert based.preset.categorical["filter_1_on"] == 0  # predicted: the head's argmax, not the base


def test_wavetable_classes(registry, catalog, mc):
    out = blank(registry, mc)
    out["wavetable"][1][0, 1] = 1.0  # osc 2: class 1 = catalog[0]
    out["wavetable"][2][0, len(catalog)] = 3.0  # osc 3: the last class = catalog[-1]
    (dec,) = run(out, registry, catalog, mc)
    assert dec.preset.wavetables[0] is None  # class 0: the init preset's table
    assert dec.preset.wavetables[1] == catalog[0].data and dec.preset.wavetables[2] == catalog[len(catalog) - 1].data
    n = mc.n_wavetables
    assert dec.wavetable_confidence == pytest.approx([1 / n, math.e / (math.e + n - 1),
                                                      math.exp(3) / (math.exp(3) + n - 1)])


def test_continuous_values_are_clipped(registry, catalog, mc):
    out = blank(registry, mc)
    names = [p.name for p in registry.continuous]
    out["continuous"][0, :3] = torch.tensor([-0.5, 1.5, 0.25])
    (dec,) = run(out, registry, catalog, mc)
    assert list(dec.preset.continuous) == names
    assert [dec.preset.continuous[n] for n in names[:3]] == [0.0, 1.0, 0.25]
    assert all(v == 0.5 for v in list(dec.preset.continuous.values())[3:])


def test_decoded_preset_round_trips_and_vita_renders_it(registry, catalog, mc):
    rng = np.random.default_rng(3)
    out = blank(registry, mc)
    out["continuous"] = torch.from_numpy(rng.uniform(-0.2, 1.2, (1, mc.n_continuous)).astype(np.float32))
    out["categorical"] = [torch.from_numpy(rng.normal(size=(1, n)).astype(np.float32)) for n in mc.categorical_classes]
    out["wavetable"][0][0, 4] = 1.0
    out = with_routes(out, registry)
    (dec,) = run(out, registry, catalog, mc)
    as_numpy = {k: [t.numpy() for t in v] if isinstance(v, list) else v.numpy() for k, v in out.items()}
    (same,) = run(as_numpy, registry, catalog, mc)  # numpy input decodes exactly like torch input
    assert same.preset == dec.preset

    preset = dec.preset
    assert all(0.0 <= v <= 1.0 for v in preset.continuous.values())
    back = Preset.from_vital(json.loads(preset.to_vital_text(registry)), registry=registry)
    assert back.categorical == preset.categorical and back.modulations == preset.modulations
    assert back.wavetables[0] == catalog[3].data
    assert max(abs(back.continuous[k] - v) for k, v in preset.continuous.items()) < 1e-6
    audio = Renderer(registry=registry).render(preset, note=60)  # RenderError if vita refused the JSON
    assert audio.shape == (88200,) and np.isfinite(audio).all()
    assert init_preset(registry).modulations == ()  # the base carries no routes: all four came from the heads


def test_presence_probability_undoes_the_pos_weight_bce_bias():
    """BCE weighting positives by w is minimised at sigmoid(z) = w p / (w p + 1 - p); presence_probability maps
    that minimiser back to p (closed form: z* = log(w p / (1 - p)))."""
    from training.heads.modulation import presence_probability

    w, p = 100.0, 0.2
    z = torch.linspace(0.0, 6.0, 60001, dtype=torch.float64)  # step 1e-4
    loss = -(w * p * torch.nn.functional.logsigmoid(z) + (1 - p) * torch.nn.functional.logsigmoid(-z))
    z_star = float(z[torch.argmin(loss)])
    assert z_star == pytest.approx(math.log(w * p / (1 - p)), abs=2e-4)  # log 25
    assert float(presence_probability(z_star, w)) == pytest.approx(p, abs=1e-4)
    assert float(presence_probability(math.log(w), w)) == pytest.approx(0.5)
    assert presence_probability(np.array([-2.0, 0.0, 3.0]), 1.0) == pytest.approx([sigmoid(-2), 0.5, sigmoid(3)])


def test_pos_weight_reads_presence_as_probability(registry, catalog, mc):
    """With pos_weight w a cell is routed at logit >= log w (probability 0.5), and its confidence is
    sigmoid(logit - log w): logit 3 (sigmoid 0.953) is a connection for w = 1, not for w = 100 (0.168)."""
    out = with_routes(blank(registry, mc), registry)
    (plain,) = run(out, registry, catalog, mc)
    (weighted,) = run(out, registry, catalog, mc, pos_weight=100.0)
    assert len(plain.preset.modulations) == 4 and weighted.preset.modulations == ()
    out["modulation"][0, 0, 0, 0] = math.log(100.0) + 0.01  # just over probability 0.5 under w = 100
    (one,) = run(out, registry, catalog, mc, pos_weight=100.0)
    assert [(m.source, m.destination) for m in one.preset.modulations] == \
        [(registry.sources[0], registry.destinations[0])]
    assert one.modulation_confidence == pytest.approx([sigmoid(0.01)], abs=1e-6)
    (lenient,) = run(out, registry, catalog, mc, pos_weight=100.0, threshold=sigmoid(3.0 - math.log(100.0)) - 1e-6)
    assert len(lenient.preset.modulations) == 2  # the logit-3 route and the one just set
