"""Data set generation: validity, label -> audio reproduction, splits, resume after SIGKILL, crash survival,
sharding + merge, and bad arguments."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from datagen.cli import main
from datagen.dataset import SCHEMA_VERSION, dense_modulation, load_catalog, preset_from_row, read_attrs
from datagen.isolation import INJECT_SEGFAULT_ENV
from datagen.generate import GenerateConfig, LabelRenderer, config_of
from tests.conftest import copy_without_audio

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--length", "0.5", "--note-length", "0.25", "--notes", "60,72", "--quiet"]


def _cli(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)


def _columns(path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: f[k][:] for k in f}


def _assert_same_dataset(a, b):
    ca, cb = _columns(a), _columns(b)
    assert sorted(ca) == sorted(cb)
    for k in ca:
        np.testing.assert_array_equal(ca[k], cb[k], err_msg=k)


@pytest.fixture(scope="module")
def tier3(tmp_path_factory):
    """The issue's 50-sample tier-3 run with 2 workers (default notes 48/60/72, 2 s renders)."""
    out = tmp_path_factory.mktemp("t3") / "tier3.h5"
    r = _cli("generate", "--tier", 3, "-n", 50, "-o", out, "--workers", 2, "--seed", 0, "--quiet")
    assert r.exit_code == 0, r.output
    assert "50 presets, 150 rows" in r.output
    return out


def test_tier3_file_is_valid(tier3, registry):
    attrs = read_attrs(tier3)
    assert attrs["schema_version"] == SCHEMA_VERSION and attrs["complete"] and attrs["tier"] == 3
    assert attrs["registry_fingerprint"] == registry.fingerprint
    assert attrs["n_presets"] == 50 and attrs["n_rows"] == 150
    assert json.loads(attrs["notes"]) == [48, 60, 72]
    assert len(json.loads(attrs["continuous_names"])) == 293 and len(json.loads(attrs["categorical_names"])) == 159
    c = _columns(tier3)
    assert c["audio"].shape == (150, 88200) and c["audio"].dtype == np.int16
    assert c["mel"].shape == (150, 128, 173) and c["mel"].dtype == np.float16
    assert c["continuous"].shape == (150, 293) and 0 <= c["continuous"].min() and c["continuous"].max() <= 1
    assert c["categorical"].shape == (150, 159) and c["modulation"].shape == (150, 64, 6)
    assert c["wavetable"].shape == (150, 3) and c["wavetable"].max() < len(load_catalog(attrs))
    assert list(c["midi_note"][:6]) == [48, 60, 72, 48, 60, 72]
    assert list(c["preset_index"][::3]) == list(range(50))
    # tier 3: every preset has 1-20 modulation connections; audio passed the rejection thresholds
    n_mod = (c["modulation"][::3, :, 0] >= 0).sum(axis=1)
    assert n_mod.min() >= 1 and n_mod.max() <= 20
    assert c["rms"].min() >= 1e-3 and c["peak"].max() < 1.0
    np.testing.assert_allclose(np.sqrt(np.mean((c["audio"] / 32767.0) ** 2, axis=1)), c["rms"], rtol=1e-3, atol=1e-5)
    # stored mel is the shared feature of the stored audio
    from datagen.dataset import from_pcm
    from datagen.features import FeatureConfig, clip_mels

    mel = clip_mels(from_pcm(c["audio"][:3]), FeatureConfig.from_json(attrs["feature_config"]))
    # computed from the stored PCM itself: equal within float16 rounding (1/1024 relative)
    np.testing.assert_allclose(mel, c["mel"][:3].astype(np.float32), rtol=2e-3, atol=2e-3)


def test_labels_rerendered_reproduce_the_stored_audio(tier3, registry):
    attrs = read_attrs(tier3)
    catalog = load_catalog(attrs)
    c = _columns(tier3)
    with LabelRenderer(config_of(attrs)) as renderer:
        for i in range(0, 150, 3):
            preset = preset_from_row({k: c[k][i] for k in ("continuous", "categorical", "wavetable", "modulation")},
                                     registry=registry, catalog=catalog)
            audio = renderer.render(preset, (48, 60, 72))  # (3 notes, samples)
            for j in range(3):
                np.testing.assert_array_equal(np.round(audio[j] * 32767).astype(np.int16), c["audio"][i + j])


def test_shifted_notes_are_a_pure_function_of_seed_and_index():
    config = GenerateConfig(notes=(48, 60, 72), note_shift=12, seed=11)
    shifts = [config.notes_of(i)[0] - 48 for i in range(500)]
    assert set(shifts) == set(range(-12, 13))  # every shift, and nothing beyond
    assert all(config.notes_of(i) == tuple(n + k for n in (48, 60, 72)) for i, k in enumerate(shifts))
    def shifts_of(seed):  # a fresh config each time: nothing is cached between calls
        return [GenerateConfig(notes=(48, 60, 72), note_shift=12, seed=seed).notes_of(i)[0] - 48 for i in range(500)]

    assert shifts_of(11) == shifts and shifts_of(12) != shifts
    assert GenerateConfig(seed=11).notes_of(7) == (48, 60, 72)  # no shift: the fixed notes


def test_a_shifted_set_stores_each_presets_notes_and_rerenders_them(tmp_path, registry):
    out = tmp_path / "shifted.h5"
    r = _cli("generate", "--tier", 1, "-n", 6, "-o", out, "--seed", 3, *FAST, "--note-shift", 12)
    assert r.exit_code == 0, r.output
    attrs = read_attrs(out)
    config = config_of(attrs)
    assert config.note_shift == 12 and json.loads(attrs["notes"]) == [60, 72]
    c = _columns(out)
    stored = [tuple(c["midi_note"][i:i + 2]) for i in range(0, 12, 2)]
    assert stored == [config.notes_of(int(i)) for i in c["preset_index"][::2]]
    assert len({n[0] for n in stored}) > 1 and all(b - a == 12 and 48 <= a <= 72 for a, b in stored)
    catalog = load_catalog(attrs)
    with LabelRenderer(config) as renderer:
        for i in range(0, 12, 2):
            preset = preset_from_row({k: c[k][i] for k in ("continuous", "categorical", "wavetable", "modulation")},
                                     registry=registry, catalog=catalog)
            audio = renderer.render(preset, stored[i // 2])
            for j in range(2):
                np.testing.assert_array_equal(np.round(audio[j] * 32767).astype(np.int16), c["audio"][i + j])
    # Without its audio, `row_audio` re-renders a row at its preset's own (shifted) notes, not the set's --notes.
    from datagen.summary import row_audio

    bare = copy_without_audio(out, tmp_path / "bare.h5")
    row = next(i for i in range(12) if c["midi_note"][i] not in (60, 72))
    heard = row_audio(bare, row)
    assert heard.rendered and heard.midi_note == c["midi_note"][row]
    np.testing.assert_array_equal(np.round(heard.audio * 32767).astype(np.int16), c["audio"][row])


def test_splits_are_disjoint_by_preset(tier3):
    c = _columns(tier3)
    by_preset = {}
    for h, s, idx in zip(c["preset_hash"], c["split"], c["preset_index"]):
        by_preset.setdefault(idx, set()).add((h, s))
    assert all(len(v) == 1 for v in by_preset.values())  # all notes of a preset: one hash, one split
    splits = {s: {i for i, v in by_preset.items() if next(iter(v))[1] == s} for s in (0, 1, 2)}
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    assert len(splits[0]) > 35  # ~90% train


def test_dense_modulation_from_sparse(tier3, registry):
    c = _columns(tier3)
    dense = dense_modulation(c["modulation"][:2], len(registry.sources), len(registry.destinations))
    assert dense.shape == (2, 5, 32, 428)
    slots = c["modulation"][0]
    active = slots[slots[:, 0] >= 0]
    assert dense[0, 0].sum() == len(active)
    s, d, amount = int(active[0, 0]), int(active[0, 1]), active[0, 2]
    assert dense[0, 1, s, d] == pytest.approx(amount)


def _generate_cmd(out, n=10, extra=()):
    return [sys.executable, "-m", "datagen", "generate", "--tier", "3", "-n", str(n), "-o", str(out),
            "--workers", "2", "--chunk-size", "1", *FAST, *extra]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    clean = tmp_path / "clean.h5"
    subprocess.run(_generate_cmd(clean), check=True, cwd=ROOT, capture_output=True)
    out = tmp_path / "killed.h5"
    parts = Path(str(out) + ".parts")
    proc = subprocess.Popen(_generate_cmd(out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("chunk_*.npz"))) < 3:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(parts.glob("chunk_*.npz")))
    assert 3 <= done < 10, done
    assert not out.exists()  # never a file that looks complete
    r = subprocess.run(_generate_cmd(out), cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"resuming: {done} of 10 presets already generated" in r.stderr
    assert not parts.exists()
    _assert_same_dataset(clean, out)
    assert read_attrs(out)["rejections"] == read_attrs(clean)["rejections"]  # counts survive the kill
    # and running it again finds it complete
    again = subprocess.run(_generate_cmd(out), cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "already complete" in again.stderr


def test_worker_segfault_costs_one_attempt(tmp_path):
    out = tmp_path / "crash.h5"
    r = _cli("generate", "--tier", 1, "-n", 4, "-o", out, "--workers", 1, *FAST,
             env={INJECT_SEGFAULT_ENV: "preset 2 attempt 0"})
    assert r.exit_code == 0, r.output
    assert "preset 2 attempt 0 crashed the Vital renderer (killed by SIGSEGV)" in r.output
    attrs = read_attrs(out)
    assert json.loads(attrs["rejections"])["crash"] == 1 and attrs["n_rows"] == 8


def test_shards_merge_into_the_unsharded_data_set(tmp_path):
    whole = tmp_path / "whole.h5"
    assert _cli("generate", "--tier", 2, "-n", 6, "-o", whole, *FAST).exit_code == 0
    shards = []
    for i in range(3):
        s = tmp_path / f"shard{i}.h5"
        r = _cli("generate", "--tier", 2, "-n", 6, "-o", s, "--shard", f"{i}/3", *FAST)
        assert r.exit_code == 0, r.output
        shards.append(s)
    merged = tmp_path / "merged.h5"
    r = _cli("merge", *shards, "-o", merged)
    assert r.exit_code == 0 and "12 rows from 3 shards" in r.output
    _assert_same_dataset(whole, merged)
    with h5py.File(merged, "r") as f:
        assert f["mel"].is_virtual
    assert read_attrs(merged)["n_presets"] == 6


@pytest.mark.parametrize("args, message", [
    (["-n", "-5"], "--count must be a positive number of presets, got -5"),
    (["-n", "0"], "--count must be a positive number of presets, got 0"),
    (["-n", "4", "--workers", "0"], "--workers must be >= 1, got 0"),
    (["-n", "4", "--notes", "60,x"], "--notes must be comma-separated MIDI numbers"),
    (["-n", "4", "--notes", "200"], "notes must be MIDI numbers 0..127"),
    (["-n", "2", "--shard", "0/3"], "3 shards for 2 presets"),
    (["-n", "4", "--notes", "60,120", "--note-shift", "12"], "shifted by up to 12 semitones leave MIDI 0..127"),
    (["-n", "4", "--note-shift", "-1"], "-1 is not in the range x>=0"),
])
def test_bad_arguments(tmp_path, args, message):
    r = _cli("generate", "-o", tmp_path / "x.h5", *args)
    assert r.exit_code == 2 and message in r.output, r.output
    assert "Traceback" not in r.output


def test_bad_shard_and_tier_are_usage_errors(tmp_path):
    r = _cli("generate", "-n", 4, "-o", tmp_path / "x.h5", "--shard", "3/2")
    assert r.exit_code == 2 and "need 0 <= i < N" in r.output
    r = _cli("generate", "-n", 4, "-o", tmp_path / "x.h5", "--tier", 4)
    assert r.exit_code == 2 and "4 is not in the range 1<=x<=3" in r.output


def test_unwritable_output(tmp_path):
    r = _cli("generate", "-n", 4, "-o", tmp_path / "missing" / "x.h5")
    assert r.exit_code == 2 and "does not exist" in r.output


def test_existing_file_with_other_fingerprint_tier_or_arguments(tmp_path):
    out = tmp_path / "d.h5"
    assert _cli("generate", "--tier", 1, "-n", 2, "-o", out, *FAST).exit_code == 0
    r = _cli("generate", "--tier", 2, "-n", 2, "-o", out, *FAST)
    assert r.exit_code == 2 and "exists with tier 1, asked for tier 2" in r.output
    r = _cli("generate", "--tier", 1, "-n", 3, "-o", out, *FAST)
    assert r.exit_code == 2 and "exists with different generation arguments" in r.output
    with h5py.File(out, "a") as f:
        f.attrs["registry_fingerprint"] = "0123456789abcdef"
    r = _cli("generate", "--tier", 1, "-n", 2, "-o", out, *FAST)
    assert r.exit_code == 2 and "exists with registry fingerprint 0123456789abcdef" in r.output


def test_incomplete_file_and_leftover_parts_with_other_arguments(tmp_path):
    out = tmp_path / "d.h5"
    out.write_bytes(b"not hdf5")
    r = _cli("generate", "--tier", 1, "-n", 2, "-o", out, *FAST)
    assert r.exit_code == 2 and "not an HDF5 data set" in r.output
    out2 = tmp_path / "e.h5"
    parts = Path(str(out2) + ".parts")
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"config": {"tier": 3}}))
    r = _cli("generate", "--tier", 1, "-n", 2, "-o", out2, *FAST)
    assert r.exit_code == 2 and "interrupted run with different arguments" in r.output


def test_wavetables_from_a_preset_folder_join_the_catalog(tmp_path, init, registry):
    from dataclasses import replace

    from datagen.preset import write_vital
    from datagen.wavetables import default_catalog, wave_from_samples

    folder = tmp_path / "presets"
    folder.mkdir()
    t = np.arange(2048) / 2048
    table = wave_from_samples("odd", [np.sign(np.sin(2 * np.pi * t)).astype(np.float32) * 0.5
                                      + np.sin(6 * np.pi * t).astype(np.float32) * 0.5])
    write_vital(replace(init, wavetables=(table.data, None, None)), folder / "p.vital", registry=registry)
    out = tmp_path / "wt.h5"
    r = _cli("generate", "--tier", 2, "-n", 3, "-o", out, "--wavetables-from", folder, *FAST)
    assert r.exit_code == 0, r.output
    catalog = load_catalog(read_attrs(out))
    assert len(catalog) == len(default_catalog()) + 1 and catalog.names[-1] == "p/odd"
    r = _cli("generate", "--tier", 2, "-n", 3, "-o", tmp_path / "x.h5", "--wavetables-from", tmp_path / "nope")
    assert r.exit_code == 2 and r.output == f"error: --wavetables-from {tmp_path / 'nope'}: no such folder\n"
