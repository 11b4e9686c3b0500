import json
import subprocess
import sys

from datagen.registry import MODULATION_SLOTS, is_modulation_slot, module_name

SWITCHED = {"osc_1", "osc_2", "osc_3", "sample", "filter_1", "filter_2", "filter_fx", "chorus", "compressor",
            "delay", "distortion", "eq", "flanger", "phaser", "reverb"}


def test_counts_per_kind(registry):
    # vita 0.1.0 exposes 772 controls; the 320 modulation slots (64 x 5) are not synth parameters.
    assert len(registry.params) == 772 - 320 == 452
    assert len(registry.continuous) == 293
    assert len(registry.categorical) == 159
    assert len(registry.sources) == 32
    assert len(registry.destinations) == 428
    assert not any(is_modulation_slot(p.name) for p in registry.params)
    assert sum(p.scale == "Exponential" for p in registry.continuous) == 30


def test_sorted_and_ranges(registry):
    names = [p.name for p in registry.params]
    assert names == sorted(names)
    assert all(p.max > p.min for p in registry.params)
    p = registry.by_name["lfo_1_frequency"]
    assert (p.min, p.max, p.scale, p.discrete) == (-7.0, 9.0, "Exponential", False)
    v = registry.by_name["chorus_voices"]
    assert (v.min, v.max, v.n_classes) == (1.0, 4.0, 4)
    assert registry.by_name["delay_style"].options == ("Mono", "Stereo", "Ping Pong", "Mid Ping Pong")


def test_fingerprint_stable_across_processes(registry):
    code = "from datagen.registry import load_registry; print(load_registry().fingerprint)"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
            for _ in range(2)}
    assert outs == {registry.fingerprint}
    assert len(registry.fingerprint) == 16


def test_fingerprint_changes_with_ranges(registry):
    from dataclasses import replace

    params = list(registry.params)
    params[0] = replace(params[0], max=params[0].max + 1)
    assert replace(registry, params=tuple(params)).fingerprint != registry.fingerprint


def test_every_module_on_switch_found(registry):
    switches = {m.name: m.on_switch for m in registry.modules}
    assert {m for m, s in switches.items() if s} == SWITCHED
    for m in SWITCHED:
        assert switches[m] == f"{m}_on" and switches[m] in registry.by_name
    expected = SWITCHED | {f"env_{i}" for i in range(1, 7)} | {f"lfo_{i}" for i in range(1, 9)} \
        | {f"random_{i}" for i in range(1, 5)} | {"global", "macro"}
    assert set(switches) == expected
    # every parameter belongs to exactly one module
    assert sum(len(m.params) for m in registry.modules) == len(registry.params)


def test_module_assignment():
    assert module_name("filter_fx_cutoff") == "filter_fx"
    assert module_name("filter_2_on") == "filter_2"
    assert module_name("osc_3_wave_frame") == "osc_3"
    assert module_name("macro_control_4") == "macro"
    assert module_name("volume") == "global"
    assert module_name("sample_transpose") == "sample"
    assert module_name("eq_low_gain") == "eq"


def test_needs_modulation(registry):
    heard_via_mod = {m.name for m in registry.modules if m.needs_modulation}
    assert heard_via_mod == {f"lfo_{i}" for i in range(1, 9)} | {f"random_{i}" for i in range(1, 5)} \
        | {f"env_{i}" for i in range(3, 7)}


def test_modulation_slots_pattern():
    assert MODULATION_SLOTS == 64
    assert is_modulation_slot("modulation_64_stereo")
    assert not is_modulation_slot("modulation_1_foo")


def test_describe_is_json(registry):
    d = json.loads(json.dumps(registry.describe()))
    assert len(d["params"]) == 452 and d["sources"][0] == "aftertouch"
