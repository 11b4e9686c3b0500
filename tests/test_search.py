"""The searchers (inference/search): never worse than their best start, never ending while budget is left,
snapshots that are the states of shorter runs, and discrete moves Vital always loads."""

from pathlib import Path

import numpy as np
import pytest

from datagen.pool import RenderPool
from datagen.preset import init_preset, read_vital
from datagen.render import RenderConfig, Renderer, deterministic
from datagen.wavetables import default_catalog
from inference.objective import Objective
from inference.search import SEARCHERS, Context, search
from inference.search.space import ORDINAL_MIN_CLASSES, crossover, move, space
from tests.conftest import perturbed

SAW_PLUCK = Path(__file__).resolve().parents[1] / "examples" / "presets" / "saw_pluck.vital"


@pytest.fixture(scope="module")
def pool():
    with RenderPool(workers=2) as p:
        yield p


@pytest.fixture(scope="module")
def task(registry):
    """saw_pluck's render at C3 (0.5 s, key held 0.3 s) as the target; three starts: init and two perturbed."""
    saw = read_vital(SAW_PLUCK, registry=registry)
    audio = Renderer().render(deterministic(saw), note=48)[:22050]
    init = init_preset(registry)
    starts = [init, perturbed(registry, init, 1), perturbed(registry, init, 2)]
    objective = Objective(audio, note=48, render=RenderConfig(), key_held=0.3)
    ctx = Context(registry=registry, importance=np.ones(len(registry.continuous)), catalog=default_catalog(), seed=3)
    return starts, objective, ctx


@pytest.mark.parametrize("name", sorted(SEARCHERS))
def test_a_searcher_spends_its_budget_and_beats_its_best_start(name, task, pool):
    starts, objective, ctx = task
    r = search(name, starts, objective, pool=pool, budget=20, ctx=ctx, snapshots=(3, 11, 20))
    start_losses = [loss for loss, _ in objective.scores(starts, pool=pool)]
    assert r.evaluations == 20 and len(r.history) == 20 and r.method == name  # never ends while budget is left
    assert r.initial_loss == start_losses[0] and r.final_loss <= min(start_losses)
    assert list(r.history) == sorted(r.history, reverse=True) and r.history[-1] == r.final_loss
    assert objective.scores([r.preset], pool=pool)[0][0] == r.final_loss  # the result sounds as it scored
    assert r.snapshots[3].loss == min(start_losses) and r.snapshots[20].loss == r.final_loss
    # the snapshot at 11 is where a run with a budget of 11 ends
    short = search(name, starts, objective, pool=pool, budget=11, ctx=ctx)
    assert r.snapshots[11].loss == short.final_loss and r.snapshots[11].evaluations == short.evaluations == 11
    assert r.snapshots[11].preset == short.preset


def test_random_search_from_no_start(task, pool):
    _, objective, ctx = task
    r = search("random", [], objective, pool=pool, budget=6, ctx=ctx)
    assert r.evaluations == 6 and r.final_loss <= r.initial_loss


def test_unknown_searcher(task, pool):
    starts, objective, ctx = task
    with pytest.raises(ValueError, match="unknown search 'nope'; choose one of"):
        search("nope", starts, objective, pool=pool, budget=4, ctx=ctx)


def test_discrete_moves_stay_loadable(registry, init):
    import vita

    synth = vita.Synth()
    rng = np.random.default_rng(0)
    catalog = default_catalog()
    preset = perturbed(registry, init, 5)
    seen = set()
    for _ in range(150):
        sp = space(preset, registry=registry, importance=np.ones(len(registry.continuous)), limit=48)
        moved = move(preset, sp, rng, catalog=catalog)
        changed = {k for k, v in moved.categorical.items() if v != preset.categorical[k]}
        assert len(changed) <= 1 and all(0 <= v < registry.by_name[k].n_classes for k, v in moved.categorical.items())
        seen |= changed
        assert synth.load_json(moved.to_vital_text(registry))
        preset = moved
    assert {"osc_1_on", "filter_1_on"} & seen and len(seen) > 20


def test_crossover_takes_one_module_of_the_donor(registry, init):
    import vita

    synth = vita.Synth()
    rng = np.random.default_rng(2)
    donor = read_vital(SAW_PLUCK, registry=registry)
    differing = {m.name for m in registry.modules if init.with_module(donor, m) != init}
    seen = set()
    for _ in range(40):
        child = crossover(init, donor, rng, registry=registry)
        taken = [m.name for m in registry.modules if child == init.with_module(donor, m)]
        assert len(taken) == 1 and taken[0] in differing  # exactly one module, one that differed
        assert child.modulations == init.modulations  # routing stays
        assert synth.load_json(child.to_vital_text(registry))
        seen |= set(taken)
    assert len(seen) >= min(5, len(differing))
    assert crossover(init, init, rng, registry=registry) == init  # nothing differs: nothing to take


def test_the_space_follows_the_preset(registry, init):
    sp = space(init, registry=registry, importance=np.ones(len(registry.continuous)), limit=48)
    names = {n for n, _ in sp.categorical}
    assert sp.oscillators == (1,)  # the init preset plays oscillator 1 only
    assert {"osc_2_on", "filter_1_on", "reverb_on", "osc_1_unison_voices"} <= names
    assert "filter_1_model" not in names  # filter 1 is off in the init preset: its model is not heard
    assert not any(n.startswith("lfo_") for n in names)  # LFOs modulate nothing there
    assert all(k >= 2 for _, k in sp.categorical)
    on = init.with_values(filter_1_on=1)
    assert "filter_1_model" in {n for n, _ in space(on, registry=registry, importance=np.ones(
        len(registry.continuous)), limit=48).categorical}


def test_ordinal_moves_are_steps(registry, init):
    rng = np.random.default_rng(1)
    sp = space(init, registry=registry, importance=np.ones(len(registry.continuous)), limit=48)
    only = type(sp)(continuous=(), categorical=(("osc_1_transpose", 97),), oscillators=())
    assert 97 >= ORDINAL_MIN_CLASSES
    steps = {move(init, only, rng).categorical["osc_1_transpose"] - init.categorical["osc_1_transpose"]
             for _ in range(200)}
    assert steps == {-12, -7, -5, -1, 1, 5, 7, 12}


def test_the_detected_key_held_time_is_what_makes_the_true_preset_best(registry, pool):
    """A pluck played with the key held 0.3 s (a 16-bit WAV): heard at the detected length, its own preset scores
    (almost) nothing, quantisation noise in the silent tail included (MelSTFTDistance.POWER_FLOOR); heard with the key
    held 1.5 s (the old fixed length), it scores far worse than it should."""
    import soundfile as sf

    from datagen.features import FeatureConfig
    from inference.audio import prepare

    saw = deterministic(read_vital(SAW_PLUCK, registry=registry)).with_values(env_1_sustain=0.8)
    audio = Renderer(RenderConfig(note_length=0.3)).render(saw, note=48)
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        sf.write(f"{d}/pluck.wav", audio, 44100)
        target = prepare(f"{d}/pluck.wav", features=FeatureConfig())
    assert abs(target.key_held - 0.3) < 0.05 and not target.held_to_end
    detected = Objective(target.audio, note=48, render=RenderConfig(), key_held=target.key_held)
    fixed = Objective(target.audio, note=48, render=RenderConfig(), key_held=1.5)
    at_detected = detected.scores([saw], pool=pool)[0][0]
    at_fixed = fixed.scores([saw], pool=pool)[0][0]
    assert at_detected < 0.1 < 1.5 < at_fixed
