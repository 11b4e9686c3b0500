"""The render engine, and Vital's pitfalls pinned as tests (segfaulting ones in subprocesses)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import vita

from datagen.render import RenderConfig, RenderError, Renderer, deterministic
from tests.conftest import spectral_distance


def _run_isolated(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_shapes_rates_and_mono(init):
    mono = Renderer(RenderConfig(sample_rate=22050, render_length=1.0, note_length=0.5)).render(init, note=48)
    assert mono.shape == (22050,) and mono.dtype == np.float32
    stereo = Renderer(RenderConfig(mono=False)).render(init)
    assert stereo.shape == (2, 88200) and stereo.dtype == np.float32
    assert 0.05 < np.abs(stereo).max() < 1.0


def test_bad_note_and_config(init):
    with pytest.raises(ValueError, match="outside 0..127"):
        Renderer().render(init, note=128)
    with pytest.raises(ValueError, match="positive"):
        RenderConfig(render_length=0)


def test_for_clip_keeps_the_base_sample_rate_and_velocity():
    """A clip's render takes the base config's (a checkpoint's) rate and velocity, its own length, and the key
    held as the clip holds it; else as the base holds it, 3/4 of the clip at most (never past its end)."""
    base = RenderConfig(sample_rate=22050, velocity=0.5, note_length=1.0, render_length=3.0, mono=False)
    assert base.for_clip(seconds=2.0) == RenderConfig(sample_rate=22050, velocity=0.5, note_length=1.0,
                                                      render_length=2.0, mono=True)
    assert base.for_clip(seconds=1.0).note_length == 0.75  # 3/4 of a 1 s clip
    assert base.for_clip(seconds=2.0, key_held=0.3) == RenderConfig(sample_rate=22050, velocity=0.5, note_length=0.3,
                                                                    render_length=2.0)
    assert base.for_clip(seconds=2.0, key_held=5.0).note_length == 2.0  # held to the end
    assert base.for_clip(seconds=2.0, key_held=0.0).note_length == 1e-3
    assert RenderConfig().for_clip(seconds=2.0) == RenderConfig()  # the defaults: 1.5 s of 2 s, 44100 Hz, 0.8
    assert RenderConfig().for_clip(seconds=1.0, key_held=None).note_length == 0.75


def test_render_config_json_round_trip():
    config = RenderConfig(sample_rate=48000, velocity=0.6, note_length=0.25, render_length=0.5, mono=False)
    assert RenderConfig.from_json(config.to_json()) == config
    assert json.loads(RenderConfig().to_json()) == {"mono": True, "note_length": 1.5, "render_length": 2.0,
                                                    "sample_rate": 44100, "velocity": 0.8}
    with pytest.raises(TypeError):
        RenderConfig.from_json(json.dumps({"sample_rate": 44100, "colour": 3}))
    with pytest.raises(ValueError, match="bad render config"):
        RenderConfig.from_json(json.dumps({"velocity": 2.0}))


def test_refused_json_raises_render_error():
    with pytest.raises(RenderError, match="refused"):
        Renderer().render("{not json")


def test_pitch_follows_note(init):
    r = Renderer()
    a48, a60 = r.render(deterministic(init), note=48), r.render(deterministic(init), note=60)
    f = np.fft.rfftfreq(a48.size, 1 / 44100)
    peak = lambda a: f[np.argmax(np.abs(np.fft.rfft(a)))]  # noqa: E731 (saw: the fundamental is the peak)
    assert peak(a48) == pytest.approx(130.81, rel=0.02)
    assert peak(a60) == pytest.approx(261.63, rel=0.02)


def test_load_json_clears_effect_tails(init):
    wet = init.with_values(reverb_on=1, reverb_dry_wet=1.0, reverb_decay_time=1.0, delay_on=1, delay_feedback=0.9)
    dry = deterministic(init)
    reused = Renderer()
    reused.render(wet)
    after_wet = reused.render(dry)
    fresh = Renderer().render(dry)
    np.testing.assert_allclose(after_wet, fresh, atol=1e-5)


def test_random_phase_makes_renders_differ_unless_zeroed(init):
    r = Renderer()
    assert init.continuous["osc_1_random_phase"] == 1.0
    a, b = r.render(init), r.render(init)
    assert np.abs(a - b).max() > 1e-2
    assert spectral_distance(a, b) < 0.05  # same sound
    assert spectral_distance(a, r.render(init, note=61)) > 0.5
    d = deterministic(init)
    np.testing.assert_allclose(r.render(d), r.render(d), atol=1e-5)


def test_oversampling_only_takes_effect_through_json(init):
    def doc(o):
        return deterministic(init).with_values(oversampling=o).to_vital_text()

    synth = vita.Synth()
    synth.load_json(doc(0))
    low = synth.render(96, 0.8, 0.5, 1.0)
    synth.get_controls()["oversampling"].set(3.0)  # a live handle: ignored by the engine
    handle = synth.render(96, 0.8, 0.5, 1.0)
    synth.load_json(doc(3))
    high = synth.render(96, 0.8, 0.5, 1.0)
    synth.load_json(doc(0))
    low_again = synth.render(96, 0.8, 0.5, 1.0)
    np.testing.assert_allclose(low, low_again, atol=1e-5)
    assert np.abs(high - low).max() > 0.1  # through JSON: the sound changes
    assert np.abs(handle - low).max() < np.abs(high - low).max() / 10


def test_pitfall_unlisted_modulation_returns_true_then_segfaults():
    assert "osc_1_on" not in vita.get_modulation_destinations()
    proc = _run_isolated("""
        import vita
        s = vita.Synth()
        print(s.connect_modulation("lfo_1", "osc_1_on"), flush=True)
        s.render(60, 0.8, 0.5, 1.0)
        print("survived", flush=True)
    """)
    assert proc.stdout.strip() == "True" and proc.returncode == -11


def test_pitfall_control_handle_outliving_synth_segfaults():
    proc = _run_isolated("""
        import gc, vita
        s = vita.Synth()
        h = s.get_controls()["filter_1_cutoff"]
        del s; gc.collect()
        h.set(0.5)
        print("survived", flush=True)
    """)
    assert "survived" not in proc.stdout and proc.returncode == -11


def test_pitfall_out_of_range_chorus_voices_segfaults(init):
    doc = init.to_vital()
    doc["settings"] = {**doc["settings"], "chorus_on": 1.0, "chorus_voices": 100.0}
    proc = _run_isolated(f"""
        import vita
        s = vita.Synth()
        s.load_json(open({json.dumps(str(_dump(doc)))}).read())
        s.render(60, 0.8, 0.5, 1.0)
        print("survived", flush=True)
    """)
    assert proc.returncode == -11


def _dump(doc) -> str:
    import tempfile

    f = tempfile.NamedTemporaryFile("w", suffix=".vital", delete=False)
    json.dump(doc, f)
    f.close()
    return f.name
