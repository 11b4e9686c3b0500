import json
import re
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from datagen.display import effect_order, tidy
from datagen.preset import Modulation, read_vital
from datagen.registry import EFFECTS
from inference import tutorial as tut
from inference.describe import describe
from inference.tutorial import Tutorial, build_prompt, offline_tutorial, tutorial
from tests.conftest import require_shared_presets

# Titles as a person sees them in Vital, written out here (not taken from the module under test).
TITLES = {
    **{f"osc_{i}": f"Oscillator {i}" for i in range(1, 4)},
    **{f"filter_{i}": f"Filter {i}" for i in (1, 2)},
    **{f"env_{i}": f"Envelope {i}" for i in range(1, 7)},
    **{f"lfo_{i}": f"LFO {i}" for i in range(1, 9)},
    **{f"random_{i}": f"Random LFO {i}" for i in range(1, 5)},
    "sample": "Sample", "chorus": "Chorus", "compressor": "Compressor", "delay": "Delay", "distortion": "Distortion",
    "eq": "EQ", "filter_fx": "FX Filter", "flanger": "Flanger", "phaser": "Phaser", "reverb": "Reverb",
}
CUTOFF_84 = (84 - 8) / 128  # filter_1_cutoff raw 84 (range 8..136): Vital shows "24 semitones", 1046.5 Hz


def _settings(entry):
    return {s["name"]: s["value"] for s in entry["settings"]}


def _headings(text):
    return [line for line in text.splitlines() if line.startswith("#")]


@pytest.fixture(scope="module")
def routed(init):
    """Init + Filter 1 on at raw cutoff 84, modulated by ENV 2 at +50%."""
    preset = init.with_values(filter_1_on=1, filter_1_cutoff=CUTOFF_84)
    return replace(preset, modulations=(Modulation(source="env_2", destination="filter_1_cutoff", amount=0.5),),
                   meta={"preset_name": "Routed"})


def _encode_order(order):
    """Port of vital::utils::encodeOrderToFloat (the inverse of what effect_order decodes)."""
    code = 0
    for i in range(1, len(order)):
        code = code * (i + 1) + sum(order[i] < order[j] for j in range(i))
    return code


# ---- display text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, tidied", [
    ("0.000500 secs", "0.0005 secs"), ("0.089919 secs", "0.0899 secs"), ("-6.019997dB", "-6.02dB"),
    ("1.000000v", "1v"), ("20.000000%", "20%"), ("16.299999 dB", "16.3 dB"), ("-0.000000", "0"),
    ("1/2", "1/2"), ("12dB", "12dB"), ("B/P/N", "B/P/N"), ("Center Drop 12", "Center Drop 12"),
    ("1234.567800", "1235"),
])
def test_tidy_rounds_vitas_six_decimals(raw, tidied):
    assert tidy(raw) == tidied


def test_init_is_one_oscillator_and_the_amp_envelope_in_vitals_text(registry, init):
    d = describe(init, registry=registry).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert [m["module"] for m in d["oscillators"]] == ["osc_1"]
    assert [m["module"] for m in d["envelopes"]] == ["env_1"]
    assert d["filters"] == d["lfos"] == d["random"] == d["effects"] == d["modulation"] == []
    osc = _settings(d["oscillators"][0])
    assert osc == {"osc_1_wavetable": "Init", "osc_1_level": "0.5", "osc_1_pan": "0%", "osc_1_transpose": "0",
                   "osc_1_tune": "0", "osc_1_unison_voices": "1v", "osc_1_wave_frame": "0",
                   "osc_1_destination": "FILTER 1"}  # detune hidden: one unison voice
    assert _settings(d["envelopes"][0]) == {
        "env_1_delay": "0 secs", "env_1_attack": "0.0005 secs", "env_1_hold": "0 secs", "env_1_decay": "1 secs",
        "env_1_sustain": "1", "env_1_release": "0.0899 secs"}
    assert _settings(d["voice"]) == {"polyphony": "8 voices", "volume": "-6.02dB"}

    text = offline_tutorial(init, registry=registry)
    assert "### Oscillator 1" in text and "- Release: **0.0899 secs**" in text
    assert "Initialize Preset" in text
    for off in ("Oscillator 2", "Filter 2", "Envelope 2", "LFO", "Reverb", "Chorus", "Drag "):
        assert off not in text, off
    assert not any("Filter" in h for h in _headings(text))


def test_filter_and_route_in_describe_and_offline_text(registry, init, routed):
    d = describe(routed, registry=registry).to_dict()
    (f,) = d["filters"]
    assert f["module"] == "filter_1" and f["inputs"] == ["Oscillator 1"]
    cutoff = next(s for s in f["settings"] if s["name"] == "filter_1_cutoff")
    assert cutoff == {"name": "filter_1_cutoff", "label": "Cutoff", "value": "24 semitones", "hz": "1.05 kHz"}
    assert _settings(f)["filter_1_model"] == "Analog" and _settings(f)["filter_1_style"] == "12dB"
    assert [m["module"] for m in d["envelopes"]] == ["env_1", "env_2"]
    assert d["envelopes"][1]["modulates"] == ["Filter 1 Cutoff"]
    assert d["modulation"] == [{
        "source": "env_2", "destination": "filter_1_cutoff", "source_label": "ENV 2",
        "destination_label": "Filter 1 Cutoff", "amount": 0.5, "amount_text": "+50%", "bipolar": False,
        "stereo": False, "power": 0.0, "instruction": "Drag ENV 2 onto Filter 1 Cutoff, amount +50%"}]

    text = offline_tutorial(routed, registry=registry, note="Matched from clip.wav")
    assert text.startswith("# Building “Routed” in Vital\n\n> Matched from clip.wav\n")
    assert "### Filter 1" in text and "- Turn **Filter 1** on." in text
    assert "- Cutoff: **24 semitones** (≈ 1.05 kHz)" in text
    assert "### Envelope 2" in text
    assert "1. Drag ENV 2 onto Filter 1 Cutoff, amount +50%." in text
    assert "Filter 2" not in text
    # sections in the documented order
    order = [text.index(h) for h in ("## 1. Start", "## 2. Sound sources", "## 3. Filters", "## 4. Envelopes",
                                       "## 5. Modulation", "## 6. Voice & master")]
    assert order == sorted(order)


def test_route_flags_and_negative_amounts(registry, routed):
    preset = replace(routed, modulations=(
        Modulation(source="macro_control_2", destination="osc_1_level", amount=-0.255, bipolar=True, power=2.0,
                   stereo=True),))
    (route,) = describe(preset, registry=registry).to_dict()["modulation"]
    assert route["instruction"] == ("Drag MACRO 2 onto Oscillator 1 Level, amount -25.5%, bipolar, stereo, "
                                    "curve power +2")
    # an unused envelope stays out; the macro used as a source is listed with the voice settings
    d = describe(preset, registry=registry).to_dict()
    assert [m["module"] for m in d["envelopes"]] == ["env_1"]
    assert _settings(d["voice"])["macro_control_2"] == "0"


def test_confidence_is_attached_to_the_named_choice(registry, routed):
    d = describe(routed, registry=registry, confidence={"filter_1_model": 0.42, "osc_1_wavetable": 0.9}).to_dict()
    model = next(s for s in d["filters"][0]["settings"] if s["name"] == "filter_1_model")
    assert model["confidence"] == 0.42
    assert d["oscillators"][0]["settings"][0] == {"name": "osc_1_wavetable", "label": "Wavetable", "value": "Init",
                                                  "confidence": 0.9}
    text = offline_tutorial(routed, registry=registry, confidence={"filter_1_model": 0.42})
    assert "- Model: **Analog** (confidence 42%)" in text


@pytest.mark.parametrize("sync, shown, hidden", [
    (0, {"lfo_1_sync": "Seconds", "lfo_1_frequency": "0.5 secs"}, "lfo_1_tempo"),
    (1, {"lfo_1_sync": "Tempo", "lfo_1_tempo": "1/2"}, "lfo_1_frequency"),
    (4, {"lfo_1_sync": "Keytrack", "lfo_1_keytrack_transpose": "-12"}, "lfo_1_tempo"),
])
def test_lfo_shows_the_rate_its_sync_mode_uses(registry, init, sync, shown, hidden):
    preset = replace(init.with_values(lfo_1_sync=sync),
                     modulations=(Modulation(source="lfo_1", destination="osc_1_pan", amount=0.25),))
    d = describe(preset, registry=registry).to_dict()
    (lfo,) = d["lfos"]
    settings = _settings(lfo)
    assert settings["lfo_1_shape"] == "Triangle" and lfo["modulates"] == ["Oscillator 1 Pan"]
    assert shown.items() <= settings.items() and hidden not in settings
    assert "### LFO 1" in offline_tutorial(preset, registry=registry)


def test_effect_order_decodes_vitals_lehmer_code():
    assert effect_order(0) == list(EFFECTS)
    # hand-worked: code 1 swaps the last two (encodeOrderToFloat([0..6, 8, 7]) == 1)
    assert effect_order(1) == list(EFFECTS[:7]) + ["reverb", "phaser"]
    rng = np.random.default_rng(0)
    for _ in range(20):
        perm = [int(i) for i in rng.permutation(len(EFFECTS))]
        assert effect_order(_encode_order(perm)) == [EFFECTS[i] for i in perm]


def test_active_effects_follow_the_chain_order(registry, init):
    order = [8, 0, 1, 2, 3, 4, 5, 6, 7]  # reverb first, then the rest in enum order
    code = _encode_order(order)
    preset = init.with_values(reverb_on=1, chorus_on=1, effect_chain_order=code)  # discrete: index == code
    d = describe(preset, registry=registry).to_dict()
    assert [(e["module"], e["position"]) for e in d["effects"]] == [("reverb", 1), ("chorus", 2)]
    assert _settings(d["effects"][0])["reverb_dry_wet"] == "25%"
    text = offline_tutorial(preset, registry=registry)
    assert "(top to bottom): Reverb → Chorus." in text
    assert text.index("### 1. Reverb") < text.index("### 2. Chorus")
    assert "Delay" not in text.replace("- Delay", "")  # the delay effect is off: not mentioned


def test_every_active_module_of_real_presets_is_covered(registry):
    paths = require_shared_presets()
    picks = [paths[i] for i in np.linspace(0, len(paths) - 1, 5).astype(int)]
    for path in picks:
        preset = read_vital(path, registry=registry)
        active = {m.name for m in registry.modules if m.on_switch and preset.categorical[m.on_switch]}
        active |= {"env_1"} | {m.source for m in preset.modulations if re.match(r"^(env|lfo|random)_\d$", m.source)}
        text = offline_tutorial(preset, registry=registry)
        headings = _headings(text)
        for module in active:
            title = TITLES[module]
            assert any(re.search(rf"^###( \d+\.)? {re.escape(title)}\b", h) for h in headings), (path.name, module)
        for module in set(TITLES) - active:
            title = TITLES[module]
            assert not any(re.search(rf"^###( \d+\.)? {re.escape(title)}\b", h) for h in headings), (path.name, module)
        drags = [line for line in text.splitlines() if re.match(r"^\d+\. Drag ", line)]
        assert len(drags) == len(preset.modulations), path.name
        # every value shown is vita's text, tidied: no trailing zeros left from vita's six decimals
        values = re.findall(r"\*\*(.+?)\*\*", text)
        assert values and not [v for v in values if re.search(r"\d\.\d*0(?!\d)", v)], path.name


def test_build_prompt_carries_the_values_and_the_instructions(registry, routed):
    prompt = build_prompt(routed, registry=registry, note="Matched from clip.wav",
                          confidence={"filter_1_model": 0.42})
    assert "- Filter 1 (input from Oscillator 1): Model = Analog [confidence 42%]; Style = 12dB; " \
           "Cutoff = 24 semitones (≈ 1.05 kHz);" in prompt
    assert "- Drag ENV 2 onto Filter 1 Cutoff, amount +50%" in prompt
    assert "Preset name: Routed" in prompt and "Context: Matched from clip.wav" in prompt
    assert "LFOs: none" in prompt and "Effects (active ones, in chain order): none" in prompt
    assert "step-by-step tutorial" in prompt and "starting from the Init preset" in prompt
    assert "Ground every step only in the settings listed above" in prompt


# ---- tutorial(): the API path, always with a fake client -----------------------------------------------------


class _FakeMessages:
    def __init__(self, reply=None, error=None):
        self.calls, self.reply, self.error = [], reply, error

    def create(self, **kwargs):
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        return self.reply


def _fake_client(**kw):
    return SimpleNamespace(messages=_FakeMessages(**kw))


def _reply(*blocks):
    return SimpleNamespace(content=[SimpleNamespace(type=t, text=x) for t, x in blocks])


@pytest.fixture
def no_api(monkeypatch):
    """No key in the environment, and a stand-in `anthropic` module whose client constructions are recorded:
    the real package (installed or not) is never reached."""
    made = []
    fake = SimpleNamespace(Anthropic=lambda **kw: made.append(kw) or _fake_client(
        reply=_reply(("text", "from the patched client"))))
    monkeypatch.setitem(sys.modules, "anthropic", fake)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("VITAL_MATCH_TUTORIAL_MODEL", raising=False)
    return made


def test_no_key_means_offline_and_says_so(registry, routed, no_api):
    t = tutorial(routed, registry=registry, note="n")
    assert isinstance(t, Tutorial)
    assert t.source == "offline" and t.notice == "offline template (no ANTHROPIC_API_KEY set)"
    assert t.text == offline_tutorial(routed, registry=registry, note="n")
    assert no_api == []


def test_key_from_the_environment_builds_a_client(registry, routed, no_api, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("VITAL_MATCH_TUTORIAL_MODEL", "claude-env-model")
    t = tutorial(routed, registry=registry)
    assert no_api == [{"api_key": "sk-test"}]
    assert (t.source, t.text) == ("anthropic:claude-env-model", "from the patched client")


def test_fake_client_gets_the_prompt_and_its_text_is_returned(registry, routed, no_api):
    client = _fake_client(reply=_reply(("thinking", "hidden"), ("text", "# Step 1\n"), ("text", "Do it.")))
    t = tutorial(routed, registry=registry, note="n", confidence={"filter_1_model": 0.42}, client=client)
    assert t.source == "anthropic:claude-sonnet-4-5" and "claude-sonnet-4-5" in t.notice
    assert t.text == "# Step 1\nDo it."
    (call,) = client.messages.calls
    assert call["model"] == "claude-sonnet-4-5" and call["max_tokens"] == 2000 and call["system"] == tut.SYSTEM_PROMPT
    assert call["messages"] == [{"role": "user", "content": build_prompt(
        routed, registry=registry, note="n", confidence={"filter_1_model": 0.42})}]
    t = tutorial(routed, registry=registry, client=client, model="claude-x")
    assert t.source == "anthropic:claude-x" and client.messages.calls[-1]["model"] == "claude-x"


def test_any_api_error_falls_back_to_offline_naming_it(registry, routed, no_api):
    class RateLimitError(Exception):
        pass

    t = tutorial(routed, registry=registry, client=_fake_client(error=RateLimitError("429 slow down\nmore")))
    assert t.source == "offline"
    assert t.notice == "offline template (API error: RateLimitError: 429 slow down)"
    assert t.text == offline_tutorial(routed, registry=registry)
    t = tutorial(routed, registry=registry, client=_fake_client(reply=_reply(("text", "  "))))
    assert (t.source, t.notice) == ("offline", "offline template (API returned no text)")


def test_missing_anthropic_package_falls_back_to_offline(registry, routed, no_api, monkeypatch):
    monkeypatch.setitem(sys.modules, "anthropic", None)  # `import anthropic` raises ImportError
    t = tutorial(routed, registry=registry, api_key="sk-test")
    assert t.source == "offline" and t.notice.startswith("offline template (anthropic package not installed")
    assert t.text == offline_tutorial(routed, registry=registry)
