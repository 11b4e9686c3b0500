"""The render pool: deterministic whatever the worker and its history, bit-identical fast path, crash-isolated."""

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from datagen.isolation import INJECT_SEGFAULT_ENV
from datagen.pool import RenderPool
from datagen.preset import read_vital
from datagen.render import RenderConfig, Renderer
from tests.conftest import perturbed, shared_presets

SAW_PLUCK = Path(__file__).resolve().parents[1] / "examples" / "presets" / "saw_pluck.vital"
SHORT = RenderConfig(render_length=0.5, note_length=0.3)


@pytest.fixture(scope="module")
def saw(registry):
    return read_vital(SAW_PLUCK, registry=registry)  # random phase on: Vital's randomness is in play


@pytest.fixture(scope="module")
def steps(saw, registry):
    """Candidates a search would ask for: saw_pluck with 20 continuous controls moved (random phase kept on)."""
    rng = np.random.default_rng(0)
    names = [p.name for p in registry.continuous if p.module not in ("global", "env_1")]
    return [saw.with_values(**{n: float(rng.random()) for n in rng.choice(names, 20, replace=False)})
            for _ in range(4)]


@pytest.fixture(scope="module")
def pool():
    with RenderPool(workers=2) as p:
        yield p


def test_same_candidate_same_audio_whatever_the_worker_and_its_history(pool, saw, steps, registry, init):
    others = [perturbed(registry, init, seed) for seed in range(3)]
    real = shared_presets()[:3]
    others += [read_vital(p, registry=registry) for p in real]
    first = pool.render(steps, note=60, config=SHORT, base=saw)
    pool.render(others + steps[::-1], note=55, config=SHORT)  # other presets, other notes, other workers
    again = pool.render(steps[::-1], note=60, config=SHORT, base=saw)[::-1]
    with RenderPool(workers=1) as fresh:  # a worker that never saw anything else
        alone = fresh.render(steps[2:3], note=60, config=SHORT)
    assert all(r.ok for r in first + again) and pool.crashes == 0
    for a, b in zip(first, again):
        assert np.array_equal(a.audio, b.audio)
    assert np.array_equal(first[2].audio, alone[0].audio)
    assert first[0].audio.shape == (22050,) and first[0].audio.dtype == np.float32
    assert not np.array_equal(first[0].audio, first[1].audio)  # the candidates do differ


def test_the_fast_path_is_bit_identical_to_loading_the_whole_preset(pool, saw, steps):
    fast = pool.render(steps, note=48, config=SHORT, base=saw)
    whole = pool.render(steps, note=48, config=SHORT)
    for a, b in zip(fast, whole):
        assert np.array_equal(a.audio, b.audio)


def test_renders_sound_like_a_fresh_synth(pool, saw):
    """Up to Vital's randomness (random phases), a pool render is what `Renderer` makes of the preset."""
    from tests.conftest import spectral_distance

    a = pool.render([saw], note=48, config=RenderConfig())[0].audio
    b = Renderer().render(saw, note=48)
    assert spectral_distance(a, b) < 0.05


def test_a_segfault_costs_one_candidate(monkeypatch, saw, steps):
    monkeypatch.setenv(INJECT_SEGFAULT_ENV, "poison")
    with RenderPool(workers=2) as p:
        out = p.render(steps, note=60, config=SHORT, base=saw, labels=["a", "poison b", "c", "d"])
        assert [r.ok for r in out] == [True, False, True, True]
        assert out[1].crashed and "poison b" in out[1].error and "SIGSEGV" in out[1].error
        assert p.crashes == 1 and p.renders == 3


def test_a_dead_worker_is_replaced_and_reloads_its_base(saw, steps):
    with RenderPool(workers=1) as p:
        before = p.render(steps[:2], note=60, config=SHORT, base=saw)
        worker = p._workers[0].worker
        pid = worker.pid
        os.kill(pid, signal.SIGKILL)
        after = p.render(steps[:2], note=60, config=SHORT, base=saw)
        assert worker.pid not in (None, pid)
    failed = [r for r in after if not r.ok]
    # the request that found the worker dead fails (crashed); the next one runs in the new worker, base reloaded
    assert len(failed) <= 1 and all(r.crashed for r in failed)
    for a, b in zip(before, after):
        if b.ok:
            assert np.array_equal(a.audio, b.audio)


def test_then_runs_on_each_audio_and_a_wrong_rate_is_refused(pool, saw):
    out = pool.render([saw, saw], note=60, config=SHORT, then=lambda a: float(np.abs(a).max()))
    assert out[0].value == out[1].value > 0
    with pytest.raises(ValueError, match="pool renders at 44100"):
        pool.render([saw], note=60, config=RenderConfig(sample_rate=48000))
