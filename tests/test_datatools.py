"""Data set tools: inspect, compute-weights, ingest, preview, precompute-mels, through Click's CliRunner, and
every bad input they name (one `error:` line, exit code 2)."""

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from datagen.cli import main
from datagen.dataset import encode_modulations, from_pcm, load_catalog, preset_from_row, read_attrs
from datagen.features import FeatureConfig, clip_mels
from datagen.generate import GenerateConfig, generate
from datagen.dataset import labels_of
from datagen.isolation import INJECT_SEGFAULT_ENV
from datagen.preset import read_vital, shared_presets_dir, write_vital
from datagen.render import RenderConfig
from datagen.wavetables import content_hash
from datagen.importance import FLOOR, _store, normalise, perturb, read_weights
from tests.conftest import copy_without_audio, require_shared_presets

N_PRESETS, NOTES = 6, (60, 72)


def _cli(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def _one_line_error(result, match):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and match in lines[0], result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """6 tier-2 presets x notes 60/72, 1 s renders (12 rows). Read-only: tests that write take a copy."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.h5"
    config = GenerateConfig(tier=2, n_presets=N_PRESETS, seed=0, notes=NOTES, chunk_size=N_PRESETS,
                            render=RenderConfig(render_length=1.0, note_length=0.5),
                            features=FeatureConfig(duration=1.0))
    generate(path, config, workers=1, show_progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_no_audio(tiny, tmp_path_factory):
    """The same set without its audio dataset (as `generate --no-audio` writes it)."""
    return copy_without_audio(tiny, tmp_path_factory.mktemp("noaudio") / "noaudio.h5")


@pytest.fixture
def copy_of(tmp_path):
    def make(path):
        out = tmp_path / f"copy_{path.name}"
        shutil.copy(path, out)
        return out
    return make


def _columns(path, *names):
    with h5py.File(path, "r") as f:
        return {k: f[k][:] for k in (names or f)}


# ---- inspect -------------------------------------------------------------------------------------------

def test_inspect_json_counts_match_what_was_generated(tiny, tmp_path):
    png = tmp_path / "mels.png"
    r = _cli("inspect", tiny, "--json", "--png", png)
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    c = _columns(tiny, "rms", "split", "preset_index")
    assert s["attrs"]["tier"] == 2 and s["attrs"]["n_presets"] == N_PRESETS and s["attrs"]["n_rows"] == 12
    assert s["attrs"]["notes"] == list(NOTES) and s["attrs"]["sample_rate"] == 44100
    assert s["attrs"]["catalog_size"] == 44 and s["attrs"]["feature_config"]["n_mels"] == 128
    assert s["schema"]["audio"] == {"shape": [12, 44100], "dtype": "int16"}
    assert s["schema"]["mel"] == {"shape": [12, 128, 87], "dtype": "float16"}
    assert s["notes"] == {"60": 6, "72": 6}
    for i, name in enumerate(("train", "val", "test")):
        assert s["splits"][name]["rows"] == int((c["split"] == i).sum())
        assert s["splits"][name]["presets"] == len(set(c["preset_index"][c["split"] == i]))
    assert sum(v["presets"] for v in s["splits"].values()) == N_PRESETS
    assert s["rms"]["p0"] == pytest.approx(float(c["rms"].min()))
    assert s["rms"]["p100"] == pytest.approx(float(c["rms"].max()))
    assert s["modulations"] == {"mean": 0.0, "min": 0, "max": 0, "presets_without": N_PRESETS}  # tier 2
    params = {p["name"]: p for p in s["continuous"]["params"]}
    # LFOs are not sampled at tier 2; the sampler zeroes the random phase that the init preset has at 1
    assert params["lfo_1_frequency"]["sampled"] is False and params["lfo_1_frequency"]["differs_from_init"] == 0.0
    assert params["osc_1_random_phase"]["differs_from_init"] == 1.0
    assert params["osc_1_level"]["min"] >= 0.45 and params["osc_1_level"]["max"] <= 1.0  # the sampler's range
    assert s["continuous"]["n_sampled_never_varied"] == 0 and len(s["continuous"]["least_varied"]) == 10
    cats = {p["name"]: p for p in s["categorical"]["params"]}
    assert cats["osc_1_on"]["n_classes"] == 2 and 1 <= cats["osc_1_on"]["distinct"] <= 2
    assert s["png_rows"] == [0, 4, 7, 11]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_text(tiny):
    r = _cli("inspect", tiny)
    assert r.exit_code == 0, r.output
    assert f"{N_PRESETS} presets, 12 rows; tier 2, seed 0" in r.output
    assert "modulation connections per preset: mean 0.00, min 0, max 0" in r.output
    assert "least varied:" in r.output and "fewest distinct:" in r.output


# ---- compute-weights -----------------------------------------------------------------------------------

def test_perturb_and_normalise_closed_forms():
    assert perturb(0.2, 0.1) == pytest.approx(0.3) and perturb(0.95, 0.1) == pytest.approx(0.85)
    np.testing.assert_allclose(normalise(np.array([3.0, 1.0, 0.0])), [3.0, 1.0, FLOOR * 4 / 3] / np.float64(
        (4 + FLOOR * 4 / 3) / 3))
    np.testing.assert_array_equal(normalise(np.zeros(4)), np.ones(4))


def test_compute_weights_audible_beats_inaudible(tiny, copy_of, registry):
    data = copy_of(tiny)
    assert read_weights(data) is None
    r = _cli("compute-weights", data, "--presets", 2, "--param", "voice_tune", "--param", "lfo_1_frequency",
             "--workers", 2, "--quiet")
    assert r.exit_code == 0, r.output
    w = read_weights(data)
    names = [p.name for p in registry.continuous]
    tune, lfo = names.index("voice_tune"), names.index("lfo_1_frequency")
    # tier 2 has no modulation: the LFO changes nothing (raw 0 -> floor), tuning moves every partial. With
    # raw importances (a, 0): floor = FLOOR * a / 2, weights = (a, FLOOR a / 2) / mean = (2, FLOOR) / (1 + FLOOR/2)
    assert w[tune] == pytest.approx(2 / (1 + FLOOR / 2)) and w[lfo] == pytest.approx(FLOOR / (1 + FLOOR / 2))
    assert np.all(np.delete(w, [tune, lfo]) == 1.0)  # not measured: neutral weight
    attrs = read_attrs(data)
    assert attrs["importance_presets"] == 2 and attrs["importance_delta"] == pytest.approx(0.1)
    assert json.loads(attrs["importance_params"]) == ["lfo_1_frequency", "voice_tune"]  # registry order
    # storing again replaces the dataset and its attrs
    _store(data, np.full(len(names), 2.0, np.float32), presets=1, delta=0.2, measured="all")
    assert np.all(read_weights(data) == 2.0) and read_attrs(data)["importance_presets"] == 1


def test_compute_weights_bad_arguments(tiny, copy_of):
    data = copy_of(tiny)
    _one_line_error(_cli("compute-weights", data, "--param", "no_such_knob", "--quiet"), "no_such_knob")
    r = _cli("compute-weights", data, "--delta", 1.5)
    assert r.exit_code == 2 and "1.5" in r.output


# ---- ingest --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    paths = require_shared_presets()
    out = tmp_path_factory.mktemp("ingest") / "real.h5"
    r = _cli("ingest", shared_presets_dir(), "-o", out, "--notes", "60,72", "--length", 0.5, "--note-length", 0.25,
             "--workers", 2, "--quiet")
    assert r.exit_code == 0, r.output
    return out, paths, r.output


def test_ingest_rows_are_presets_times_notes(ingested):
    out, paths, output = ingested
    attrs = read_attrs(out)
    assert attrs["tier"] == 0 and attrs["n_presets"] == len(paths) and attrs["n_rows"] == 2 * len(paths)
    assert json.loads(attrs["rejections"]) == {} and f"{len(paths)} of {len(paths)} presets" in output
    c = _columns(out, "midi_note", "preset_index", "audio", "mel", "split")
    assert c["audio"].shape == (2 * len(paths), 22050) and c["mel"].shape == (2 * len(paths), 128, 44)
    np.testing.assert_array_equal(c["midi_note"], np.tile(NOTES, len(paths)))
    np.testing.assert_array_equal(c["preset_index"], np.repeat(np.arange(len(paths)), 2))
    assert attrs["source_folder"] and len(json.loads(attrs["preset_files"])) == len(paths)
    assert json.loads(attrs["render_config"])["render_length"] == 0.5


def test_ingest_labels_equal_read_vital(ingested, registry):
    out, paths, _ = ingested
    attrs = read_attrs(out)
    catalog = load_catalog(attrs)
    files = json.loads(attrs["preset_files"])
    c = _columns(out, "continuous", "categorical", "wavetable", "modulation", "preset_index")
    assert np.all(c["wavetable"] >= 0)  # every oscillator's table is in the extended catalog
    for row in range(0, len(c["preset_index"]), 2):
        path = paths[int(c["preset_index"][row])]
        assert path.as_posix().endswith(files[int(c["preset_index"][row])])
        preset = read_vital(path, registry=registry)
        np.testing.assert_array_equal(c["continuous"][row], np.array([preset.continuous[p.name]
                                                                      for p in registry.continuous], np.float32))
        np.testing.assert_array_equal(c["categorical"][row], [preset.categorical[p.name] for p in registry.categorical])
        np.testing.assert_array_equal(c["modulation"][row], encode_modulations(preset.modulations, registry))
        for i, table in enumerate(preset.wavetables):
            assert catalog[int(c["wavetable"][row, i])].content_hash == content_hash(table)
    # labels -> Preset -> labels is the identity (what training and preview rely on)
    row = {k: c[k][0] for k in ("continuous", "categorical", "wavetable", "modulation")}
    again = labels_of(preset_from_row(row, registry=registry, catalog=catalog), registry, catalog)
    for k in row:
        np.testing.assert_array_equal(again[k], row[k])
    assert "real presets" in _cli("inspect", out).output


@pytest.fixture(scope="module")
def small_ingest(init, registry, tmp_path_factory):
    """Ingest of 3 files: the init preset, one that segfaults (injected), one that is not JSON."""
    folder = tmp_path_factory.mktemp("small") / "presets"
    (folder / "sub").mkdir(parents=True)
    write_vital(init, folder / "a_init.vital", registry=registry)
    write_vital(init.with_values(osc_1_transpose=0.6), folder / "sub" / "boom.vital", registry=registry)
    (folder / "broken.vital").write_text("{not json")
    out = folder.parent / "out.h5"
    r = _cli("ingest", folder, "-o", out, "--notes", "48,60", "--length", 0.5, "--note-length", 0.25, "--quiet",
             env={INJECT_SEGFAULT_ENV: "boom.vital"})
    return folder, out, r


def test_ingest_skips_unreadable_and_segfaulting_presets(small_ingest):
    folder, out, r = small_ingest
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.output.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 2, r.output  # one line per bad file
    assert "preset 'sub/boom.vital' crashed the Vital renderer (killed by SIGSEGV)" in r.output
    assert "broken.vital: not a Vital preset (invalid JSON" in r.output
    attrs = read_attrs(out)
    assert attrs["n_rows"] == 2 and json.loads(attrs["rejections"]) == {"unreadable": 1, "crash": 1}
    assert json.loads(attrs["preset_files"]) == ["a_init.vital", "broken.vital", "sub/boom.vital"]
    np.testing.assert_array_equal(_columns(out, "preset_index")["preset_index"], [0, 0])
    _one_line_error(_cli("ingest", folder, "-o", out, "--quiet"), "exists")


def test_ingest_bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no presets here")
    _one_line_error(_cli("ingest", tmp_path / "empty", "-o", tmp_path / "o.h5"), "no .vital presets")
    _one_line_error(_cli("ingest", tmp_path / "missing", "-o", tmp_path / "o.h5"), "no such folder")
    _one_line_error(_cli("ingest", tmp_path / "empty", "-o", tmp_path / "no" / "o.h5"), "does not exist")
    _one_line_error(_cli("ingest", tmp_path / "empty", "-o", tmp_path / "o.h5", "--notes", "60,x"), "--notes")


# ---- preview -------------------------------------------------------------------------------------------

def test_preview_writes_the_stored_audio(tiny, tmp_path):
    out = tmp_path / "row.wav"
    r = _cli("preview", tiny, "--row", 5, "-o", out)
    assert r.exit_code == 0, r.output
    assert "stored audio" in r.output
    audio, sr = sf.read(out, dtype="float32")
    stored = _columns(tiny, "audio")["audio"][5]
    assert sr == 44100
    np.testing.assert_array_equal(audio, stored.astype(np.float32) / np.float32(32767))


def test_preview_rerenders_a_set_without_audio(small_ingest, tmp_path):
    _, with_audio, _ = small_ingest
    data = copy_without_audio(with_audio, tmp_path / "noaudio.h5")
    out = tmp_path / "row.wav"
    r = _cli("preview", data, "--row", 1, "-o", out)
    assert r.exit_code == 0, r.output
    assert "re-rendered from its labels" in r.output and "note 60" in r.output
    audio, sr = sf.read(out, dtype="float32")
    stored = _columns(with_audio, "audio")["audio"][1] / 32767.0
    assert sr == 44100 and audio.shape == stored.shape == (22050,)
    # ingest renders the float32 values it stores, in a forked pristine worker, as preview does: the labels
    # reproduce the stored audio up to its int16 rounding
    assert np.abs(audio - stored).max() <= 0.5 / 32767 + 1e-6


def test_preview_bad_row_and_no_player(tiny, tmp_path):
    _one_line_error(_cli("preview", tiny, "--row", 12, "-o", tmp_path / "o.wav"), "row 12 is out of range")
    _one_line_error(_cli("preview", tiny, "--row", -1, "-o", tmp_path / "o.wav"), "row -1 is out of range")
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        _one_line_error(_cli("preview", tiny, "--row", 0), "pass -o")


# ---- precompute-mels -----------------------------------------------------------------------------------

def test_precompute_mels_in_place(tiny, copy_of):
    data = copy_of(tiny)
    r = _cli("precompute-mels", data, "--n-mels", 64, "--hop-length", 256, "--quiet")
    assert r.exit_code == 0, r.output
    config = FeatureConfig.from_json(read_attrs(data)["feature_config"])
    assert (config.n_mels, config.hop_length, config.n_fft, config.duration) == (64, 256, 2048, 1.0)
    c = _columns(data, "mel", "audio")
    assert c["mel"].shape == (12, 64, 173)
    expect = clip_mels(from_pcm(c["audio"][:2]), config).astype(np.float16)  # the prepared clip, as generate
    np.testing.assert_array_equal(c["mel"][:2], expect)
    with h5py.File(data, "r") as f:
        assert "mel.new" not in f


def test_precompute_mels_into_a_copy(tiny, tmp_path):
    out = tmp_path / "copy.h5"
    r = _cli("precompute-mels", tiny, "--n-mels", 40, "-o", out, "--quiet")
    assert r.exit_code == 0, r.output
    assert _columns(out, "mel")["mel"].shape == (12, 40, 87)
    assert _columns(tiny, "mel")["mel"].shape == (12, 128, 87)  # the source is untouched
    a, b = _columns(tiny), _columns(out)
    assert sorted(a) == sorted(b)
    for k in a:
        if k != "mel":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert read_attrs(out)["n_rows"] == 12
    _one_line_error(_cli("precompute-mels", tiny, "-o", out, "--quiet"), "exists")


def test_precompute_mels_needs_audio_and_a_valid_config(tiny, tiny_no_audio, tmp_path):
    _one_line_error(_cli("precompute-mels", tiny_no_audio, "--n-mels", 64), "has no audio")
    _one_line_error(_cli("precompute-mels", tiny, "--f-max", 30000, "-o", tmp_path / "o.h5"), "f_max")


# ---- bad data set inputs, common to every command that reads one -------------------------------------------

COMMANDS = {
    "inspect": [],
    "compute-weights": ["--quiet"],
    "preview": ["--row", "0", "-o", "{tmp}/o.wav"],
    "precompute-mels": ["--quiet"],
}


@pytest.fixture
def bad_sets(tmp_path):
    not_h5 = tmp_path / "text.h5"
    not_h5.write_text("not an HDF5 file")
    incomplete = tmp_path / "incomplete.h5"
    with h5py.File(incomplete, "w") as f:
        f.attrs["schema_version"] = 1
        f.create_dataset("midi_note", data=np.zeros(3, np.int16))
    foreign = tmp_path / "foreign.h5"  # complete, but not one of ours
    with h5py.File(foreign, "w") as f:
        f.attrs["schema_version"] = 1
        f.attrs["complete"] = True
        f.attrs["n_rows"] = 3
        f.create_dataset("x", data=np.zeros(3))
    return {"no such data set": tmp_path / "missing.h5", "not an HDF5 data set": not_h5,
            "incomplete data set": incomplete, "not a vital-match data set": foreign}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_data_sets_are_one_line_errors(command, bad_sets, tmp_path):
    extra = [a.format(tmp=tmp_path) for a in COMMANDS[command]]
    for message, path in bad_sets.items():
        _one_line_error(_cli(command, path, *extra), message)


def test_unwritable_outputs(tiny, tmp_path):
    _one_line_error(_cli("inspect", tiny, "--png", tmp_path / "no" / "m.png"), "does not exist")
    _one_line_error(_cli("preview", tiny, "--row", 0, "-o", tmp_path), "is a directory")
    _one_line_error(_cli("precompute-mels", tiny, "-o", tmp_path / "no" / "o.h5"), "does not exist")


def test_help_imports_nothing_heavy():
    code = ("import sys; from click.testing import CliRunner; from datagen.cli import main\n"
            "for cmd in ('inspect', 'compute-weights', 'ingest', 'preview', 'precompute-mels'):\n"
            "    r = CliRunner().invoke(main, [cmd, '--help']); assert r.exit_code == 0, r.output\n"
            "print([m for m in ('torch', 'vita', 'matplotlib', 'librosa', 'h5py', 'soundfile') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
