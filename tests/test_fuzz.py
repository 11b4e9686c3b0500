"""Never a traceback, never a dead process, for inputs nobody listed: mutated presets through `read_vital`,
`datagen render` and `datagen ingest`, and random audio files through `infer` (hypothesis)."""

import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from datagen.cli import main as datagen_main
from datagen.preset import PresetError, read_vital
from inference.cli import main as inference_main

SAW_PLUCK = Path(__file__).resolve().parents[1] / "examples" / "presets" / "saw_pluck.vital"
BASE = json.loads(SAW_PLUCK.read_text())
HUGE = "__HUGE_INTEGER__"  # replaced in the JSON text by a 5000-digit integer (json.dumps cannot write one)
SLOW = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

values = st.one_of(
    st.text(max_size=12), st.booleans(), st.none(), st.just(HUGE),
    st.integers(min_value=-(10 ** 400), max_value=10 ** 400),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),  # json writes NaN / Infinity
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@st.composite
def mutated(draw) -> str:
    """The JSON text of saw_pluck.vital with 1-4 mutations: a control, a modulation field or slot, a wavetable,
    a top-level key replaced by a value of the wrong kind, deleted, or joined by an unknown key."""
    doc = copy.deepcopy(BASE)
    settings_ = doc["settings"]
    controls = sorted(k for k, v in settings_.items() if isinstance(v, (int, float)))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["control", "modulation field", "modulation slot", "wavetable", "top",
                                      "delete", "extra"]))
        value = draw(values)
        if where == "control":
            settings_[draw(st.sampled_from(controls))] = value
        elif where == "modulation field":
            i, k = draw(st.integers(1, 64)), draw(st.sampled_from(["amount", "bipolar", "bypass", "power", "stereo"]))
            settings_[f"modulation_{i}_{k}"] = value
            settings_["modulations"][i - 1] = {"source": "lfo_1", "destination": "filter_1_cutoff"}
        elif where == "modulation slot":
            slot = draw(st.integers(0, 63))
            settings_["modulations"][slot] = draw(st.one_of(
                values, st.fixed_dictionaries({"source": values, "destination": values}),
                st.fixed_dictionaries({"source": st.sampled_from(["lfo_1", "env_2", "nope"]),
                                       "destination": st.sampled_from(["osc_1_level", "nowhere", ""])})))
        elif where == "wavetable":
            tables = settings_["wavetables"]
            tables[draw(st.integers(0, len(tables) - 1))] = draw(st.one_of(
                values, st.fixed_dictionaries({"groups": values}), st.fixed_dictionaries({"name": values})))
        elif where == "top":
            key = draw(st.sampled_from(["settings", "preset_name", "synth_version", "author"]))
            doc[key] = value
            if key == "settings":
                break
        elif where == "delete":
            settings_.pop(draw(st.sampled_from(sorted(settings_))), None)
        else:
            settings_[draw(st.text(min_size=1, max_size=8))] = value
    return json.dumps(doc).replace(f'"{HUGE}"', "9" * 5000)


@settings(SLOW, max_examples=150)
@given(text=mutated())
def test_read_vital_raises_only_preset_error(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.vital"
        path.write_text(text)
        try:
            read_vital(path)
        except PresetError as e:
            assert "\n" not in str(e) and str(e).startswith(str(path)) and len(str(e)) < 400


def one_line_or_success(result, codes=(0, 2)) -> None:
    assert result.exit_code in codes, result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("error:")]) == (result.exit_code != 0)


@pytest.mark.slow
@settings(SLOW, max_examples=10)
@given(text=mutated())
def test_datagen_render_survives_mutated_presets(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.vital"
        path.write_text(text)
        r = CliRunner().invoke(datagen_main, ["render", str(path), "-o", str(Path(d) / "m.wav"), "--length", "0.5",
                                              "--note-length", "0.3"], catch_exceptions=False)
        one_line_or_success(r)


@pytest.mark.slow
@settings(SLOW, max_examples=6)
@given(texts=st.lists(mutated(), min_size=1, max_size=3))
def test_ingest_skips_bad_presets_and_writes_the_good_one(texts):
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "presets"
        folder.mkdir()
        (folder / "a_good.vital").write_text(SAW_PLUCK.read_text())
        for i, text in enumerate(texts):
            (folder / f"m{i}.vital").write_text(text)
        out = Path(d) / "real.h5"
        r = CliRunner().invoke(datagen_main, ["ingest", str(folder), "-o", str(out), "--notes", "60", "--length",
                                              "0.5", "--note-length", "0.3", "--quiet"], catch_exceptions=False)
        one_line_or_success(r, codes=(0,))
        assert out.is_file() and "presets" in r.output


@st.composite
def audio_files(draw) -> dict:
    """A random audio file's parameters: 0-60 s, 1-8 channels, 8-192 kHz, int or float, maybe NaN/Inf or DC."""
    rate = draw(st.sampled_from([8000, 11025, 22050, 44100, 48000, 96000, 192000]))
    channels = draw(st.integers(1, 8))
    max_seconds = min(60.0, 4e6 / (rate * channels))  # at most ~4M samples written per file
    # no subnormals: once vita has rendered in this process they flush to zero and hypothesis refuses them
    seconds = draw(st.one_of(st.just(0.0), st.floats(0.0, 0.05, allow_subnormal=False),
                             st.floats(0.0, max_seconds, allow_subnormal=False)))
    return {"rate": rate, "channels": channels, "frames": int(seconds * rate),
            "subtype": draw(st.sampled_from(["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8"])),
            "kind": draw(st.sampled_from(["tone", "noise", "silence", "dc", "nan", "inf", "loud"])),
            "format": draw(st.sampled_from(["WAV", "FLAC"]))}


def write_audio(path: Path, spec: dict) -> None:
    n, c, rate = spec["frames"], spec["channels"], spec["rate"]
    t = np.arange(n) / rate
    x = np.zeros((n, c))
    if spec["kind"] in ("tone", "nan", "inf", "loud"):
        x += 0.3 * np.sin(2 * np.pi * 220 * t)[:, None]
    if spec["kind"] == "noise":
        x += np.random.default_rng(0).normal(0, 0.2, (n, c))
    if spec["kind"] == "dc":
        x += 0.5
    if spec["kind"] == "loud":
        x *= 40.0  # far beyond full scale (float files keep it)
    if n and spec["kind"] in ("nan", "inf"):
        x[n // 2] = np.nan if spec["kind"] == "nan" else np.inf
    subtype, fmt = spec["subtype"], spec["format"]
    if fmt == "FLAC" and subtype not in ("PCM_16", "PCM_24"):
        subtype = "PCM_16"
    if subtype.startswith("PCM") or subtype == "PCM_U8":
        x = np.nan_to_num(x, nan=0.0, posinf=1.0)
    sf.write(path, x, rate, subtype=subtype, format=fmt)


@pytest.mark.slow
@settings(SLOW, max_examples=15)
@given(spec=audio_files())
def test_infer_on_random_audio_is_a_result_or_one_error(spec, tiny_checkpoint):
    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / ("clip.flac" if spec["format"] == "FLAC" else "clip.wav")
        try:
            write_audio(clip, spec)
        except sf.LibsndfileError:
            return  # a combination libsndfile cannot write (e.g. FLAC over 655 kHz): nothing to read
        before = clip.read_bytes()
        r = CliRunner().invoke(inference_main, ["infer", "-i", str(clip), "-o", str(Path(d) / "x.vital"), "-c",
                                                str(tiny_checkpoint)], catch_exceptions=False)
        one_line_or_success(r)
        assert clip.read_bytes() == before
        assert (Path(d) / "x.vital").is_file() == (r.exit_code == 0)
