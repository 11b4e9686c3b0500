"""datagen/wavetables.py and waveforms.py: the procedural catalog, its JSON, Vital rendering of its tables,
real-preset tables."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest

from datagen.preset import init_preset, shared_presets_dir
from datagen.render import Renderer, deterministic
from datagen.waveforms import N_SAMPLES
from datagen.wavetables import (
    MAX_POSITION,
    Catalog,
    Wavetable,
    WavetableError,
    content_hash,
    decode_wave,
    default_catalog,
    even_positions,
    lookup,
    procedural_catalog,
    tables_from_presets,
    wave_from_samples,
)
from tests.conftest import log_spectrum, require_shared_presets

# sha256 prefix of default_catalog().to_json(). Changing any procedural table changes it, and with it every
# dataset and checkpoint label built on the catalog: update it only on purpose.
GOLDEN_FINGERPRINT = "1d4b5b49f106f868"
N_TABLES, N_MULTI_KEYFRAME = 44, 25
MIDDLE_C = 261.6256  # Hz, MIDI note 60


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return default_catalog()


# ---- the procedural catalog -----------------------------------------------------------------------------


def test_catalog_size_names_and_keyframes(catalog):
    assert len(catalog) == N_TABLES and len(catalog) >= 32
    assert len(set(catalog.names)) == len(catalog)
    assert sum(t.keyframes > 1 for t in catalog) == N_MULTI_KEYFRAME >= 12
    assert catalog.names[:5] == ["init", "basic/sine", "basic/triangle", "basic/saw", "basic/square"]
    assert catalog.index("basic/saw") == 3 and catalog[3].name == "basic/saw"
    assert catalog[catalog.index("basic/morph")].keyframes == 4  # sine, triangle, saw, square
    with pytest.raises(KeyError, match="no wavetable named"):
        catalog.index("no such table")


def test_every_frame_is_one_clean_cycle(catalog):
    n_frames = 0
    for table in catalog:
        frames = table.wave_frames()
        assert len(frames) == table.keyframes, table.name
        for frame in frames:
            assert frame.shape == (N_SAMPLES,) and frame.dtype == np.float32, table.name
            assert np.all(np.isfinite(frame)), table.name
            assert abs(float(np.abs(frame).max()) - 1.0) < 1e-6, table.name  # peak 1
            assert abs(float(frame.mean(dtype=np.float64))) < 1e-3, table.name  # no DC
            if table.name != "init":  # Vital's own Init saw is naive; every procedural frame is band-limited
                spectrum = np.abs(np.fft.rfft(frame.astype(np.float64)))
                assert spectrum[513:].max() < 1e-5 * spectrum.max(), table.name  # Init: 2e-3
            n_frames += 1
    assert n_frames == 179


def test_keyframes_spread_over_the_whole_table(catalog):
    assert even_positions(1) == [0]
    assert even_positions(4) == [0, 85, 171, 256]
    for table in catalog:
        (component,) = table.data["groups"][0]["components"]
        positions = [kf["position"] for kf in component["keyframes"]]
        assert positions == even_positions(table.keyframes), table.name
        assert positions[-1] == (MAX_POSITION if table.keyframes > 1 else 0)


def test_json_round_trip_and_golden_fingerprint(catalog):
    text = catalog.to_json()
    again = Catalog.from_json(text)
    assert again == catalog and again.to_json() == text
    assert again.fingerprint == catalog.fingerprint == GOLDEN_FINGERPRINT
    assert json.loads(text)["format"] == "vital-match-wavetables/1"


def test_build_is_deterministic(catalog):
    fresh = Catalog(tuple(procedural_catalog()))
    assert fresh is not catalog and fresh == catalog
    assert fresh.fingerprint == GOLDEN_FINGERPRINT
    assert default_catalog() is catalog  # cached


def test_init_table_is_vitals_own_bit_for_bit(catalog, init):
    # The template's Init table (name "Init", vita's version string) has the same content as catalog[0].
    assert lookup(init.wavetables[0], catalog) == 0
    assert catalog[0].data["groups"] == init.wavetables[0]["groups"]
    assert lookup(catalog[1].data, catalog) == 1
    assert lookup({"groups": []}, catalog) is None


def test_wave_from_samples_encodes_float32_little_endian():
    ramp = np.linspace(-1, 1, N_SAMPLES, dtype=np.float32)
    table = wave_from_samples("t", [ramp, -ramp, ramp * 0.5])
    keyframes = table.data["groups"][0]["components"][0]["keyframes"]
    assert [kf["position"] for kf in keyframes] == [0, 128, 256]
    assert table.keyframes == 3 and table.data["name"] == "t"
    assert np.array_equal(decode_wave(keyframes[1]["wave_data"]), -ramp)
    assert keyframes[0]["wave_data"].startswith("AACAv")  # -1.0f is 00 00 80 bf
    assert set(table.data) == {"name", "author", "version", "full_normalize", "remove_all_dc", "groups"}
    assert wave_from_samples("t", [ramp], [7]).data["groups"][0]["components"][0]["keyframes"][0]["position"] == 7
    with pytest.raises(WavetableError, match="2048 finite samples"):
        wave_from_samples("t", [ramp[:100]])
    with pytest.raises(WavetableError, match="increase strictly"):
        wave_from_samples("t", [ramp, ramp], [10, 10])
    with pytest.raises(WavetableError, match="2 frames but 1 positions"):
        wave_from_samples("t", [ramp, ramp], [0])


def test_content_hash_ignores_labels_only():
    table = wave_from_samples("a", [np.sin(np.linspace(0, 2 * np.pi, N_SAMPLES, endpoint=False))])
    relabelled = {**table.data, "name": "b", "author": "someone", "version": "1.0.3"}
    assert content_hash(relabelled) == table.content_hash
    assert content_hash({**table.data, "remove_all_dc": False}) != table.content_hash


def test_bad_catalogs_are_refused(catalog):
    with pytest.raises(WavetableError, match="not JSON"):
        Catalog.from_json("{")
    with pytest.raises(WavetableError, match="not a wavetable catalog"):
        Catalog.from_json('{"format": "other", "tables": []}')
    with pytest.raises(WavetableError, match="repeated: basic/sine"):
        Catalog((catalog[1], catalog[1]))


# ---- rendering through Vital ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def render(catalog):
    renderer, base = Renderer(), deterministic(init_preset())

    def _render(name: str, **values: float) -> np.ndarray:
        preset = dataclasses.replace(base, wavetables=(catalog[catalog.index(name)].data, None, None))
        return renderer.render(preset.with_values(**values), note=60)

    return _render


def harmonics(audio: np.ndarray, n: int = 8, sr: int = 44100) -> np.ndarray:
    """Magnitudes of harmonics 1..n of middle C over 0.2..1.2 s (Hann window, 1 Hz bins), relative to h1."""
    seg = audio[int(0.2 * sr):int(1.2 * sr)].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    bins = [round(k * MIDDLE_C * len(seg) / sr) for k in range(1, n + 1)]
    h = np.array([spectrum[b - 2:b + 3].max() for b in bins])
    return h / h[0]


def test_injected_tables_render_with_their_own_spectra(render):
    sine, saw = render("basic/sine"), render("basic/saw")
    for audio in (sine, saw):
        assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 1e-3
    # the init preset's own table is a saw: a pure sine proves the injected table is the one playing
    assert harmonics(sine)[1:].max() < 0.01
    h = harmonics(saw)
    assert 0.45 < h[1] < 0.6 and 0.3 < h[2] < 0.42  # ~1/2, ~1/3
    assert np.abs(log_spectrum(sine)[10:60] - log_spectrum(saw)[10:60]).mean() > 1.0  # phase-insensitive


def test_wave_frame_moves_through_a_multi_keyframe_table(render):
    start, end = render("fm/ratio 1"), render("fm/ratio 1", osc_1_wave_frame=1.0)
    assert harmonics(start)[1:].max() < 0.01  # index 0: a sine
    assert harmonics(end)[1:].sum() > 1.5  # index 7: a dense spectrum
    assert np.abs(log_spectrum(start)[10:60] - log_spectrum(end)[10:60]).mean() > 0.3


# ---- tables from preset files ---------------------------------------------------------------------------


def _write_preset(path, tables):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"settings": {"wavetables": [t.data for t in tables]}}))


def test_tables_from_presets_dedups_names_and_skips_bad_files(tmp_path, catalog, caplog):
    sine, saw, pulse = catalog[catalog.index("basic/sine")], catalog[catalog.index("basic/saw")], catalog[8]
    other_sine = wave_from_samples("basic/sine", [np.roll(sine.wave_frames()[0], 100)])  # same name, new content
    _write_preset(tmp_path / "a.vital", [sine, saw, sine])
    _write_preset(tmp_path / "b.vital", [Wavetable("x", {**saw.data, "name": "Relabelled"}), pulse, catalog[0]])
    (tmp_path / "bad.vital").write_text("{not json")
    _write_preset(tmp_path / "c.vital", [Wavetable("empty", {"groups": []}), sine])  # one unusable table
    _write_preset(tmp_path / "sub" / "a.vital", [other_sine])
    with caplog.at_level(logging.WARNING, logger="datagen.wavetables"):
        tables = tables_from_presets(tmp_path)
    assert [t.name for t in tables] == ["a/basic/sine", "a/basic/saw", "b/pulse/12.5%", "b/init", "a/basic/sine #2"]
    assert tables[0].data == sine.data and tables[4].data == other_sine.data
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and messages[0].startswith(f"{tmp_path / 'bad.vital'}: skipped, no readable wavetables")
    assert messages[1] == f"{tmp_path / 'c.vital'}: skipped 1 wavetable(s): #1 (no components)"

    bigger = catalog.extend(tables)  # only the rolled sine is new content; its name clashes
    assert len(bigger) == len(catalog) + 1 and bigger.names[-1] == "a/basic/sine #2"
    assert lookup(other_sine.data, bigger) == len(catalog) and lookup(other_sine.data, catalog) is None
    assert catalog.extend([Wavetable("basic/sine", other_sine.data)]).names[-1] == "basic/sine #2"
    assert len(catalog) == N_TABLES  # extend returns a new catalog


def test_tables_from_real_presets(catalog):
    paths = require_shared_presets()
    tables = tables_from_presets(shared_presets_dir())
    assert len(tables) > 10
    assert len({t.name for t in tables}) == len(tables)
    assert len({t.content_hash for t in tables}) == len(tables)
    assert all(t.keyframes >= 1 for t in tables)
    bigger = catalog.extend(tables)
    assert Catalog.from_json(bigger.to_json()) == bigger
    # every table of a real preset is found again, with its own content, under its preset's name
    path = next(p for p in paths if p.stem == tables[-1].name.split("/")[0])
    doc = json.loads(path.read_text(encoding="utf-8"))
    found = [lookup(data, bigger) for data in doc["settings"]["wavetables"]]
    assert None not in found and bigger.index(tables[-1].name) in found
    assert all(bigger[i].content_hash == content_hash(data) for i, data in zip(found, doc["settings"]["wavetables"]))
    # Vital's Init table (kept by many real presets) is the procedural "init": the only duplicate on extend
    assert sum(lookup(t.data, catalog) == 0 for t in tables) == 1
    assert len(bigger) == len(catalog) + len(tables) - 1
