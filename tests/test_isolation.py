import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from datagen.isolation import INJECT_SEGFAULT_ENV, IsolatedRenderer, RenderCrash, ThreadWorkers
from datagen.render import RenderConfig, RenderError, Renderer, deterministic


def _segfaulting_json(init) -> str:
    # Bypasses Preset clamping on purpose: chorus_voices=100 is a real Vital segfault.
    doc = init.to_vital()
    doc["settings"] = {**doc["settings"], "chorus_on": 1.0, "chorus_voices": 100.0}
    return json.dumps(doc)


def test_segfault_becomes_exception_and_worker_restarts(init):
    with IsolatedRenderer(RenderConfig(render_length=1.0, note_length=0.5)) as r:
        good = r.render(deterministic(init))
        with pytest.raises(RenderCrash, match=r"preset 'bad chorus' crashed the Vital renderer \(killed by SIGSEGV\)"):
            r.render(_segfaulting_json(init), name="bad chorus")
        assert r.crashes == 1
        again = r.render(deterministic(init))  # a fresh worker
        np.testing.assert_allclose(good, again, atol=1e-5)
        direct = Renderer(RenderConfig(render_length=1.0, note_length=0.5)).render(deterministic(init))
        np.testing.assert_allclose(good, direct, atol=1e-5)


def test_refused_preset_is_render_error_not_crash(init):
    with IsolatedRenderer() as r:
        with pytest.raises(RenderError, match="refused"):
            r.render("{broken", name="broken")
        assert r.crashes == 0


def test_injected_segfault(init, monkeypatch):
    monkeypatch.setenv(INJECT_SEGFAULT_ENV, "poison-me")
    named = init.__class__(**{**init.__dict__, "meta": {"preset_name": "poison-me"}})
    with IsolatedRenderer(RenderConfig(render_length=0.5, note_length=0.25)) as r:
        with pytest.raises(RenderCrash, match="poison-me"):
            r.render(named)
        assert r.render(init).shape == (22050,)


def test_hang_is_reported(init):
    with IsolatedRenderer(RenderConfig(render_length=30.0, note_length=1.0), timeout=0.05) as r:
        with pytest.raises(RenderCrash, match="hung for more than 0.05 s"):
            r.render(init, name="slow")


def _echo(tag):
    return lambda request: (tag, request)


def test_thread_workers_one_worker_per_thread_reused_and_closed_together():
    together = threading.Barrier(2)  # both jobs run at once, so on two threads

    def job(name):
        together.wait(timeout=30)
        assert workers.call(1, label=name) == ("tag", 1)
        first = workers.worker()
        assert workers.call(2, label=name) == ("tag", 2)
        assert workers.worker() is first and first.pid is not None  # the same thread reuses its worker
        return first

    with ThreadWorkers(_echo, "tag", timeout=60.0, fork=True) as workers:
        with ThreadPoolExecutor(max_workers=2) as pool:
            made = [f.result() for f in [pool.submit(job, f"thread {i}") for i in range(2)]]
        assert made[0] is not made[1] and made[0].pid != made[1].pid  # two threads, two processes
        assert {id(w) for w in workers.workers} == {id(w) for w in made}
        workers.close()
        assert all(w.pid is None for w in made)
        workers.close()  # idempotent
    assert all(w.pid is None for w in made)  # and the with block closes once more without complaint
