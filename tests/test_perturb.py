"""The realistic presets: perturbed "build" presets, a pure function of (bases, config, index), and a data set of
them made by `generate --perturb-from` (tier 0, only the build half of a folder's fixed split)."""

import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import require_shared_presets
from datagen.cli import main
from datagen.console import ConfigError
from datagen.perturb import PerturbConfig, Perturber
from datagen.preset import read_vital, shared_presets_dir, shared_split
from datagen.registry import OSCILLATORS


@pytest.fixture(scope="module")
def bases(registry):
    require_shared_presets()
    return [read_vital(p, registry=registry) for p in shared_split("build")[:3]]


def test_a_pure_function_of_the_index(bases, registry):
    a = Perturber(bases, PerturbConfig(seed=4), registry=registry)
    b = Perturber(bases, PerturbConfig(seed=4), registry=registry)
    b.sample(5)
    assert a.sample(7).to_vital_text() == b.sample(7).to_vital_text()
    assert a.sample(7).to_vital_text() != a.sample(7, attempt=1).to_vital_text()
    assert a.sample(7).name.startswith(bases[7 % 3].name)  # the bases take turns


def test_steps_stay_in_range_and_are_the_size_asked(bases, registry):
    p = Perturber(bases, PerturbConfig(sigma=0.05, p_redraw=0.0, p_octave=0.0, amount_sigma=0.0), registry=registry)
    base = p.bases[0]
    moved = p.sample(0)
    steps = np.array([moved.continuous[q.name] - base.continuous[q.name] for q in p.continuous])
    assert all(0.0 <= moved.continuous[q.name] <= 1.0 for q in p.continuous)
    assert 0.02 < np.abs(steps).mean() < 0.05  # |N(0, 0.05)| has mean 0.04, less where clipped at 0 or 1
    assert moved.categorical == base.categorical and moved.modulations == base.modulations
    still = Perturber(bases, PerturbConfig(sigma=0.0, p_redraw=0.0, p_octave=0.0, amount_sigma=0.0),
                      registry=registry).sample(0)
    assert still.continuous == base.continuous  # nothing asked, nothing moved
    octaves = Perturber(bases, PerturbConfig(sigma=0.0, p_redraw=0.0, p_octave=1.0, amount_sigma=0.0),
                        registry=registry).sample(0)
    for o in OSCILLATORS:
        before, after = base.categorical[f"{o}_transpose"], octaves.categorical[f"{o}_transpose"]
        if not base.categorical[f"{o}_on"]:
            assert after == before  # an oscillator that is off keeps its transpose
        elif 12 <= before <= 84:  # away from the +-48 ends: exactly an octave up or down
            assert abs(after - before) == 12


def test_recombination_takes_whole_modules_from_the_bases(bases, registry):
    still = dict(sigma=0.0, p_redraw=0.0, p_octave=0.0, amount_sigma=0.0)
    p = Perturber(bases, PerturbConfig(p_recombine=0.5, **still), registry=registry)
    mixed = 0
    for i in range(6):
        child, base = p.sample(i), p.bases[i % len(p.bases)]
        assert child.modulations == base.modulations  # the routing stays the base's
        for m in registry.modules:  # every module is the same module of one of the bases
            assert any(child.with_module(b, m) == child for b in p.bases), m.name
        mixed += any(child.with_module(base, m) != child for m in registry.modules)
        stepped_from = p.base(i)  # no steps asked: the sample is its base, recombined
        assert (child.continuous, child.categorical) == (stepped_from.continuous, stepped_from.categorical)
    assert mixed >= 3  # half the modules are drawn anew: most presets take some from another base
    again = Perturber(bases, PerturbConfig(p_recombine=0.5, **still), registry=registry)
    assert again.sample(4).to_vital_text() == p.sample(4).to_vital_text()  # still a pure function of the index
    plain = Perturber(bases, PerturbConfig(**still), registry=registry)
    assert plain.sample(4).continuous == plain.bases[4 % 3].continuous  # 0: no recombination
    stepped = Perturber(bases, PerturbConfig(p_recombine=0.5, p_redraw=0.0, p_octave=0.0), registry=registry)
    child, stepped_from = stepped.sample(4), stepped.base(4)
    assert child.categorical == stepped_from.categorical and child.continuous != stepped_from.continuous
    assert max(abs(child.continuous[k] - v) for k, v in stepped_from.continuous.items()) < 0.5  # steps of 0.08


def test_bad_configs(bases, registry):
    with pytest.raises(ConfigError, match="in \\[0, 1\\]"):
        PerturbConfig(sigma=2.0)
    with pytest.raises(ConfigError, match="in \\[0, 1\\]"):
        PerturbConfig(p_recombine=1.5)
    with pytest.raises(ConfigError, match="no presets"):
        Perturber([], registry=registry)


def test_generate_perturb_from_uses_only_the_build_half(tmp_path, registry, capfd):
    require_shared_presets()
    folder = tmp_path / "presets"
    build = shared_split("build")[:2]
    score = shared_split("score")[:1]
    for p in build + score:
        dst = folder / p.relative_to(shared_presets_dir())
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dst)
    listed = "\n".join(f"- `{p.relative_to(shared_presets_dir()).as_posix()}`" for p in build)
    scored = "\n".join(f"- `{p.relative_to(shared_presets_dir()).as_posix()}`" for p in score)
    (folder / "README.md").write_text(f"- **build**\n{listed}\n- **score**\n{scored}\n")
    out = tmp_path / "p.h5"
    args = ["generate", "-n", "4", "-o", str(out), "--notes", "60", "--length", "0.5", "--note-length", "0.3",
            "--perturb-from", str(folder), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        assert f.attrs["tier"] == 0 and len(f["midi_note"]) == 4
    # a preset's ignored controls are reported once, by the command, not again by each render worker
    said = result.output + capfd.readouterr().err
    assert said.count(f"{build[0].name}: ignored") == 1, said
    build_names = {read_vital(p, registry=registry).name for p in build}
    perturber = Perturber([read_vital(p, registry=registry) for p in build], registry=registry)
    assert {perturber.sample(i).name.split(" perturbed")[0] for i in range(4)} == build_names

    (folder / "README.md").unlink()
    bad = CliRunner().invoke(main, args[:4] + [str(tmp_path / "q.h5")] + args[5:])
    assert bad.exit_code == 2 and "--perturb-from" in bad.output and "README" in bad.output
    missing = CliRunner().invoke(main, args[:-3] + ["--perturb-from", str(tmp_path / "nowhere"), "--quiet"])
    assert missing.exit_code == 2 and "no such folder" in missing.output
    alone = CliRunner().invoke(main, args[:-3] + ["--recombine", "0.3", "--quiet"])
    assert alone.exit_code == 2 and "--recombine mixes the presets of --perturb-from" in alone.output
