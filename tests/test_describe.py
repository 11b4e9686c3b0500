"""The description every renderer reads (`inference.describe.PresetView`): typed, frozen, built once.

What a description holds (texts, relevance, sections) is pinned in test_tutorial.py through `to_dict()` and the
template; here: the typed fields renderers read, `with_confidence`, and that the tutorial and the demo's cards
and route table render a view they are given without describing the preset again."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace

import pytest

from datagen import display
from datagen.preset import Modulation
from inference import demo
from inference.describe import PresetView, Route, Setting, describe
from inference.tutorial import build_prompt, offline_tutorial, tutorial

CUTOFF_84 = (84 - 8) / 128  # filter_1_cutoff raw 84 (range 8..136): Vital shows "24 semitones", 1046.5 Hz


@pytest.fixture(scope="module")
def routed(init):
    """Init + Filter 1 on at raw cutoff 84, modulated by ENV 2 at +50%."""
    preset = init.with_values(filter_1_on=1, filter_1_cutoff=CUTOFF_84)
    return replace(preset, modulations=(Modulation(source="env_2", destination="filter_1_cutoff", amount=0.5),),
                   meta={"preset_name": "Routed"})


@pytest.fixture
def count_descriptions(monkeypatch):
    """How many times a preset was loaded into vita for its display texts (the costly part of describing)."""
    calls = []
    real = display.control_texts
    monkeypatch.setattr(display, "control_texts", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    return calls


def test_the_view_is_typed_and_frozen(registry, routed):
    view = describe(routed, registry=registry, confidence={"filter_1_model": 0.42})
    assert isinstance(view, PresetView) and view.name == "Routed"
    assert [k for k, _ in view.sections] == ["oscillators", "filters", "envelopes", "lfos", "random", "effects"]
    (f,) = view.filters
    assert f.inputs == ("Oscillator 1",) and f.position is None and f.modulates == ()
    assert f.settings[0] == Setting(name="filter_1_model", label="Model", value="Analog", confidence=0.42)
    assert f.settings[2] == Setting(name="filter_1_cutoff", label="Cutoff", value="24 semitones", hz="1.05 kHz")
    env_1, env_2 = view.envelopes
    assert (env_1.modulates, env_2.modulates) == ((), ("Filter 1 Cutoff",))
    assert view.oscillators[0].inputs is None  # only filters have inputs
    assert view.modulation == (Route(source="env_2", destination="filter_1_cutoff", source_label="ENV 2",
                                     destination_label="Filter 1 Cutoff", amount=0.5, amount_text="+50%",
                                     bipolar=False, stereo=False, power=0.0,
                                     instruction="Drag ENV 2 onto Filter 1 Cutoff, amount +50%"),)
    assert view.voice.title == "Voice & master"
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.title = "Filter 2"
    d = view.to_dict()
    assert json.loads(json.dumps(d)) == d and d["filters"][0]["inputs"] == ["Oscillator 1"]
    assert "modulates" not in d["envelopes"][0] and "position" not in d["filters"][0]


def test_with_confidence_is_describing_with_that_confidence(registry, routed, count_descriptions):
    view = describe(routed, registry=registry, confidence={"filter_1_model": 0.42, "osc_1_wavetable": 0.9})
    assert count_descriptions == [1]
    other = {"filter_1_model": 0.123456, "filter_1_style": 0.5}
    assert view.with_confidence(other) == describe(routed, registry=registry, confidence=other)
    assert view.with_confidence(None) == describe(routed, registry=registry)
    assert view.with_confidence(other).filters[0].settings[0].confidence == 0.1235  # rounded to 4 places
    assert len(count_descriptions) == 3  # the two describe() calls above; with_confidence never loads vita


def test_every_renderer_reads_a_given_view_without_describing_again(registry, routed, count_descriptions,
                                                                    monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    view = describe(routed, registry=registry, confidence={"filter_1_model": 0.42})
    text = offline_tutorial(view, note="n")
    prompt = build_prompt(view, note="n")
    tut = tutorial(view, note="n")
    html = demo._preset_html(view)
    routes = demo._routes_md(view, (0.8,))
    assert count_descriptions == [1]
    conf = {"filter_1_model": 0.42}
    assert text == tut.text == offline_tutorial(routed, registry=registry, note="n", confidence=conf)
    assert prompt == build_prompt(routed, registry=registry, note="n", confidence=conf)
    with pytest.raises(ValueError, match="describe"):
        offline_tutorial(view, confidence=conf)  # a built view carries its confidences already

    assert html.startswith("<h3>Routed</h3>")
    assert "<div style='font-weight:600'>Filter 1</div><div style='font-size:.8em;opacity:.7'>fed by Oscillator 1" \
           "</div>" in html
    assert "<b>24 semitones (1.05 kHz)</b>" in html and ">42%</span>" in html
    assert "modulates Filter 1 Cutoff" in html and ">Voice &amp; master<" in html
    assert [h for h in ("Oscillators", "Filters", "Envelopes", "LFOs", "Effects", "Global") if f">{h}</h4>" in html] \
        == ["Oscillators", "Filters", "Envelopes", "Global"]
    assert routes.splitlines()[-1] == "| ENV 2 | Filter 1 Cutoff | +50% |  | 80% |"


def test_demo_routes_without_modulation(registry, init):
    assert demo._routes_md(describe(init, registry=registry), ()) == (
        "### Modulation routes\n\nNo modulation routes: the sound is static apart from its envelopes.")
