"""The preset bank: entries rebuild their exact presets, a resumed or sharded build equals a clean one, and the
nearest entries of a clip come first."""

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from datagen.bank import Bank, BankConfig, BankError, build, embed, preset_hash
from datagen.cli import main
from datagen.features import FeatureConfig
from datagen.registry import load_registry
from datagen.render import RenderConfig, Renderer
from datagen.wavetables import default_catalog

SMALL = BankConfig(presets_per_tier=3, tiers=(1, 3), notes=(48, 60),
                   render=RenderConfig(render_length=0.5, note_length=0.3),
                   features=FeatureConfig(duration=0.5))


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    path = tmp_path_factory.mktemp("bank") / "bank.npz"
    stats = build(path, SMALL, workers=2, show_progress=False)
    assert stats["written"] and stats["chunks"] == stats["done"] == 2
    return Bank.load(path)


def test_entries_rebuild_their_exact_presets(clean):
    registry, catalog = load_registry(), default_catalog()
    # 3 presets x 2 tiers x 2 notes, less tier 3's preset 2, silent in 0.5 s at both notes (no entry)
    assert len(clean) == 10 and sorted(set(clean.tier.tolist())) == [1, 3]
    assert clean.embedding.shape == (10, 256) and clean.embedding.dtype == np.float16
    for row in range(len(clean)):
        assert preset_hash(clean.preset(row), registry, catalog) == clean.hash[row]


def test_a_resumed_sharded_build_equals_a_clean_one(clean, tmp_path):
    path = tmp_path / "bank.npz"
    first = build(path, SMALL, workers=1, shard=(0, 2), show_progress=False)
    assert first["done"] == 1 and not first["written"] and not path.exists()
    parts = tmp_path / "bank.npz.parts"
    assert sorted(p.name for p in parts.iterdir()) == ["chunk_00000.npz", "config.json"]
    (parts / "chunk_00000.npz").unlink()  # as if killed before the chunk was written
    second = build(path, SMALL, workers=1, show_progress=False)
    assert second["written"] and second["done"] == 2
    again = Bank.load(path)
    for name in ("tier", "index", "note", "embedding", "hash"):
        assert np.array_equal(getattr(again, name), getattr(clean, name)), name
    with pytest.raises(BankError, match="holds a build with other settings"):
        build(path, BankConfig(presets_per_tier=4, tiers=(1,), notes=(60,)), show_progress=False)


def test_perturbed_entries_rebuild_their_exact_presets(tmp_path):
    from datagen.bank import PERTURBED, REAL
    from datagen.preset import shared_split

    real = tuple(str(p) for p in shared_split("build")[:2])
    config = BankConfig(tiers=(), notes=(60,), real=real, perturbed=3, render=SMALL.render, features=SMALL.features)
    stats = build(tmp_path / "bank.npz", config, workers=1, show_progress=False)
    assert stats["written"] and stats["chunks"] == 2  # the real presets' chunk, then the perturbed ones'
    bank = Bank.load(tmp_path / "bank.npz")
    assert bank.tier.tolist() == [REAL] * 2 + [PERTURBED] * 3 and bank.index.tolist() == [0, 1, 0, 1, 2]
    registry, catalog = load_registry(), default_catalog()
    for row in range(len(bank)):
        assert preset_hash(bank.preset(row), registry, catalog) == bank.hash[row]
    assert len(set(bank.hash.tolist())) == 5  # perturbed: none equals its base
    assert bank.preset(3).name.startswith(bank.preset(1).name.split(" perturbed")[0])  # index 1 moves base 1
    with pytest.raises(BankError, match="perturbed presets are drawn from real ones"):
        BankConfig(perturbed=3)


def test_nearest_comes_first(clean):
    row = int(np.flatnonzero((clean.tier == 3) & (clean.note == 60))[1])
    preset = clean.preset(row)
    audio = Renderer(SMALL.render).render(preset, note=60)
    assert np.abs(embed(audio, SMALL.features) - clean.embedding[row].astype(np.float32)).max() < 0.05
    found = clean.nearest(audio, note=62, k=2)  # 62: the bank note nearest is 60
    assert found[0].name == preset.name and len(found) == 2


def test_perturbed_and_other_entries_take_turns(monkeypatch):
    from dataclasses import asdict

    from datagen.bank import PERTURBED

    features = FeatureConfig(duration=0.5)
    tone = np.sin(2 * np.pi * 220 * np.arange(22050) / 44100).astype(np.float32)
    e = embed(tone, features)
    tier = np.array([PERTURBED, PERTURBED, PERTURBED, 3, 3], np.int8)  # in order of distance from the tone
    bank = Bank(tier=tier, index=np.arange(5), note=np.full(5, 60, np.int8), hash=np.zeros(5, "S16"),
                embedding=(e[None] - np.arange(5)[:, None]).astype(np.float16), config={"features": asdict(features)})
    monkeypatch.setattr(bank, "preset", lambda row: row)
    assert bank.nearest(tone, note=60, k=4) == [3, 0, 4, 1]  # the two nearest of each kind, alternating
    assert bank.nearest(tone, note=60, k=9) == [3, 0, 4, 1, 2]  # one kind spent: the other goes on
    bank.tier[:] = 3
    assert bank.nearest(tone, note=60, k=3) == [0, 1, 2]  # no perturbed entries: nearest first, as ever


def test_embedding_ignores_level():
    t = np.arange(22050) / 44100
    tone = np.sin(2 * np.pi * 220 * t).astype(np.float32) * np.exp(-3 * t).astype(np.float32)
    config = FeatureConfig(duration=0.5)
    assert np.abs(embed(tone, config) - embed(0.01 * tone, config)).max() < 1e-4
    assert embed(tone, config).max() == 0.0 and embed(tone, config).min() >= -18.0


def test_a_file_that_is_not_a_bank(tmp_path):
    path = tmp_path / "x.npz"
    path.write_text("hello")
    with pytest.raises(BankError, match="not a preset bank"):
        Bank.load(path)
    with pytest.raises(BankError, match="no such bank"):
        Bank.load(tmp_path / "missing.npz")


def test_bank_cli_bad_inputs(tmp_path):
    r = CliRunner().invoke(main, ["bank", "-o", str(tmp_path / "b.txt")])
    assert r.exit_code == 2 and "unsupported file type '.txt'; use .npz" in r.output
    r = CliRunner().invoke(main, ["bank", "-o", str(tmp_path / "b.npz"), "--tiers", "4"])
    assert r.exit_code == 2 and "--tiers must be among 1, 2, 3" in r.output
    r = CliRunner().invoke(main, ["bank", "-o", str(tmp_path / "b.npz"), "--perturbed", "5"])
    assert r.exit_code == 2 and "--perturbed moves the real presets of --real" in r.output
    shutil.rmtree(tmp_path / "b.npz.parts", ignore_errors=True)


def test_the_shipped_bank_rebuilds_its_presets_with_the_sampler_it_was_built_with():
    """The shipped bank predates sampler version 2 (its config has no `sampler_version`): its entries must
    still rebuild their exact presets, i.e. with version 1."""
    from importlib.resources import files

    bank = Bank.load(files("inference") / "assets" / "bank.npz")
    assert "sampler_version" not in bank.config
    registry, catalog = load_registry(), default_catalog()
    rows = np.flatnonzero(bank.tier > 0)
    for row in rows[:: max(1, len(rows) // 12)]:  # a dozen entries across the tiers
        assert preset_hash(bank.preset(int(row)), registry, catalog) == bank.hash[row]
