"""The render pool every search listens through: deterministic, crash-isolated, near raw Vital speed.

    with RenderPool(sample_rate=44100) as pool:
        results = pool.render(candidates, note=48, config=RenderConfig(note_length=0.3), base=start)

- Workers: `workers` spawned processes (torch-free, so a fork costs ~15 ms), each holding one pristine Synth that
  never renders. Every candidate renders in a fresh fork of a worker (`datagen.isolation.Worker(fork=True)`).
- Deterministic: Vital's random generators advance only while rendering, so a fork of a worker that has only
  *loaded* presets renders exactly like a fork of a brand-new one (tests/test_pool.py checks it bit for bit, on
  real presets with random phases on). The same candidate gives the same audio whichever worker renders it and
  whatever it rendered before.
- Fast: a search's candidates mostly differ from its start (`base`) in continuous values only. The worker loads
  the base once (in `prepare`, before forking) and the fork only sets the changed controls through their
  handles and renders: bit-identical to `load_json(candidate)`, and it skips the JSON parse and wavetable
  rebuild that cost as much as the render itself. Any other candidate is loaded whole (it becomes the base).
- Crash-isolated: a candidate that segfaults Vital kills only its fork (`Rendered.crashed`); a worker that dies
  is replaced on its next request. A candidate that hangs past `timeout` kills its worker, which is replaced.

`then(audio) -> value`, if given, runs in the dispatching thread as soon as a candidate's audio arrives (the
objective's distance), overlapping the next renders.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from datagen.isolation import Worker, WorkerCrash
from datagen.preset import Preset
from datagen.registry import Registry, load_registry
from datagen.render import RenderConfig


@dataclass(frozen=True)
class Rendered:
    audio: np.ndarray | None  # (n_samples,) float32 mono; None when the render failed
    value: Any = None  # then(audio), when a `then` was given and the render succeeded
    error: str | None = None  # why it failed (Vital refused it, crashed, hung)
    crashed: bool = False  # the candidate killed its fork (or hung): Vital itself failed on it

    @property
    def ok(self) -> bool:
        return self.audio is not None


class _CandidateHandler:
    """Lives in a worker process: one pristine Synth. `prepare` (in the worker) loads the request's base when it
    is not the one loaded; `__call__` (in a fork) sets the candidate's changed controls and renders."""

    def __init__(self, sample_rate: int):
        import vita

        self.synth = vita.Synth()
        self.synth.set_sample_rate(float(sample_rate))
        self.controls = self.synth.get_controls()  # handles stay valid: this Synth lives as long as the worker
        self.key = None  # the base loaded now

    def prepare(self, request: dict) -> dict:
        if request["key"] != self.key:
            if request["text"] is None:
                raise RuntimeError("base preset not sent")  # the pool sends it whenever this worker may lack it
            self.key = None
            if not self.synth.load_json(request["text"]):
                raise RuntimeError("Vital refused the preset (malformed, or saved by a newer Vital)")
            self.key = request["key"]
        return {k: v for k, v in request.items() if k != "text"}  # the fork does not need the JSON again

    def __call__(self, request: dict) -> np.ndarray:
        for name, value in request["delta"].items():
            self.controls[name].set(value)
        c = request["config"]
        audio = self.synth.render(int(request["note"]), c["velocity"], c["note_length"], c["render_length"])
        return audio.mean(axis=0, dtype=np.float32)  # (n_samples,) mono


class _PoolWorker:
    """A Worker plus which base it holds (forgotten when the process is replaced)."""

    def __init__(self, sample_rate: int, timeout: float):
        self.worker = Worker(_CandidateHandler, sample_rate, timeout=timeout, fork=True)
        self.loaded: tuple[int | None, str | None] = (None, None)  # (pid, base key)


class RenderPool:
    """See the module docstring. Thread-safe: `render` may be called from several threads at once."""

    def __init__(self, *, sample_rate: int = 44100, workers: int | None = None, timeout: float = 120.0,
                 registry: Registry | None = None):
        self.sample_rate = int(sample_rate)
        self.registry = registry or load_registry()
        self.size = max(1, workers or os.cpu_count() or 1)
        self._workers = [_PoolWorker(self.sample_rate, timeout) for _ in range(self.size)]
        self._free: queue.Queue[_PoolWorker] = queue.Queue()
        for w in self._workers:
            self._free.put(w)
        # twice the workers: a thread computing `then` for one candidate leaves its worker to the next one
        self._threads = ThreadPoolExecutor(max_workers=2 * self.size, thread_name_prefix="render-pool")
        self._lock = threading.Lock()
        self.crashes = 0
        self.renders = 0

    def render(self, presets: Sequence[Preset], *, note: int, config: RenderConfig = RenderConfig(),
               base: Preset | None = None, then: Callable[[np.ndarray], Any] | None = None,
               labels: Sequence[str] | None = None) -> list[Rendered]:
        """One `Rendered` per preset, in order. `base`: the preset most candidates derive from (by
        `Preset.with_values` on continuous controls); candidates that differ from it in anything else are loaded
        whole. `config.sample_rate` must be the pool's; `config.mono` is ignored (renders are mono)."""
        if config.sample_rate != self.sample_rate:
            raise ValueError(f"render config at {config.sample_rate} Hz, the pool renders at {self.sample_rate}")
        cfg = {"velocity": config.velocity, "note_length": config.note_length, "render_length": config.render_length}
        base_doc = self._document(base) if base is not None else None
        jobs = []
        for i, p in enumerate(presets):
            delta = self._delta(base, p) if base is not None else None
            key, text = base_doc if delta is not None else self._document(p)
            jobs.append({"key": key, "text": text, "delta": delta or {}, "note": int(note), "config": cfg,
                         "label": labels[i] if labels else f"candidate {i}"})
        return list(self._threads.map(lambda job: self._one(job, then), jobs))

    def _document(self, preset: Preset) -> tuple[str, str]:
        text = preset.to_vital_text(self.registry)
        return hashlib.sha1(text.encode()).hexdigest(), text

    def _delta(self, base: Preset, p: Preset) -> dict[str, float] | None:
        """Raw values of the continuous controls where `p` differs from `base`, or None when `p` differs in
        anything else (a switch, a wavetable, a modulation, a sample)."""
        if p is base:
            return {}
        same = (p.categorical == base.categorical
                and (p.wavetables is base.wavetables or p.wavetables == base.wavetables)
                and p.modulations == base.modulations and (p.extras is base.extras or p.extras == base.extras))
        if not same:
            return None
        reg = self.registry
        return {name: p.raw(name, reg) for name, x in p.continuous.items() if x != base.continuous[name]}

    def _one(self, job: dict, then) -> Rendered:
        w = self._free.get()
        try:
            request = dict(job)
            label = request.pop("label")
            if w.loaded == (w.worker.pid, job["key"]) and w.worker.pid is not None:
                request["text"] = None  # the worker holds this base already
            try:
                audio = w.worker.call(request, label=label)
            except WorkerCrash as e:
                with self._lock:
                    self.crashes += 1
                w.loaded = (None, None) if w.worker.pid is None else (w.worker.pid, job["key"])
                return Rendered(audio=None, error=str(e), crashed=True)
            except RuntimeError as e:  # the handler refused (Vital refused the preset)
                w.loaded = (None, None)
                return Rendered(audio=None, error=f"{label}: {e}")
            w.loaded = (w.worker.pid, job["key"])
        finally:
            self._free.put(w)
        with self._lock:
            self.renders += 1
        if not np.all(np.isfinite(audio)):
            return Rendered(audio=None, error=f"{label}: non-finite audio")
        return Rendered(audio=audio, value=then(audio) if then is not None else None)

    def close(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)
        for w in self._workers:
            w.worker.close()

    def __enter__(self) -> "RenderPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
