"""The objective every search minimises, and the pool it listens through.

loss = `datagen.distances.SearchDistance` (the mean of four terms: auraloss's multi-resolution STFT distance on a
64-band mel scale at FFT 1024 / 2048 / 4096 and on a linear scale at FFT 128 / 256 / 512, both floored 70 dB down,
and the average spectrum and the level envelope heard 100 dB down; both clips RMS-normalised) between the render
of a candidate at the clip's note (the key held as long as in the clip) and the target. The benchmark scores with another yardstick on purpose (why:
`datagen.distances`).

Renders go through a `datagen.pool.RenderPool` (forks of pristine worker processes, one per core:
deterministic, crash-isolated, a search's base preset loaded once per worker and only changed controls set per
candidate); each loss is computed as its render arrives, with torch single-threaded (`render_pool`): its own
thread pool fights the render processes otherwise. A render that fails, crashes or is silent scores `FAILED_LOSS`.
Why silence fails: the distance normalises each clip's level, so silence costs only about the target's own
spectral-convergence term (~1) and beat every sounding candidate on short hits (a hi-hat's search ended on a
preset that renders nothing; research/benchmarks.md). A target is never silent (`inference.audio.prepare`).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np

from datagen.distances import SEARCH_LEVEL

log = logging.getLogger(__name__)

FAILED_LOSS = 1e3  # what a candidate that cannot be rendered (or renders NaN, or silence) scores
SILENT_RMS = SEARCH_LEVEL["floor"]  # a render quieter than this is silence (the distances leave it unnormalised)


class Objective:
    """loss(preset) = `SearchDistance` between its render at `note` and the target. Renders go through a
    `RenderPool`; `scores` computes each loss in the pool's thread as its render arrives. Thread-safe.

    target: (samples,) mono at `render.sample_rate`. render: the base `datagen.render.RenderConfig` (a checkpoint's,
    `Pipeline.render`: its sample rate and velocity); candidates render the length of the target with the key held
    `key_held` seconds (None: as `render` holds it, 3/4 of the target at most; `RenderConfig.for_clip`)."""

    def __init__(self, target: np.ndarray, *, note: int, render, key_held: float | None = None):
        from datagen.distances import SearchDistance

        self.note = int(note)
        n = len(target)
        sample_rate = render.sample_rate
        # the key held as long as in the clip when known, else as training data holds it
        self.render_config = render.for_clip(seconds=n / sample_rate, key_held=key_held)
        self.target = np.asarray(target, np.float32)  # (n,)
        self.n = n
        self._loss = SearchDistance(sample_rate=sample_rate)

    def distance(self, audio: np.ndarray) -> float:
        from datagen.features import fit_length, rms

        x = fit_length(np.asarray(audio, np.float32), self.n)
        if not np.isfinite(x).all() or rms(x) < SILENT_RMS:
            return FAILED_LOSS
        loss = self._loss(x, self.target)
        return loss if np.isfinite(loss) else FAILED_LOSS

    def renders(self, presets, *, pool, base=None, labels=None, then=None) -> list:
        """`pool.render` of the presets at this objective's note and key-held time, random phase off
        (`datagen.render.deterministic`): a list of `datagen.pool.Rendered`."""
        from datagen.render import deterministic

        return pool.render([deterministic(p) for p in presets], note=self.note, config=self.render_config,
                           base=deterministic(base) if base is not None else None, then=then, labels=labels)

    def scores(self, presets, *, pool, base=None, labels=None) -> list[tuple[float, bool]]:
        """(loss, failed) per preset; a render that fails, crashes or is silent scores FAILED_LOSS."""
        out = []
        for r in self.renders(presets, pool=pool, base=base, labels=labels, then=self.distance):
            if not r.ok:
                log.debug("render failed: %s", r.error)
            loss = r.value if r.ok else FAILED_LOSS
            out.append((loss, loss >= FAILED_LOSS))
        return out


@contextmanager
def render_pool(workers: int | None, *, sample_rate: int = 44100, pool=None):
    """A `datagen.pool.RenderPool` (or `pool` itself, left open when given), with torch single-threaded
    meanwhile: its own thread pool fights the render processes otherwise. workers: None means one per core.
    Shared by refinement, the benchmark and the demo."""
    import torch

    from datagen.pool import RenderPool

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    own = pool is None
    pool = pool if pool is not None else RenderPool(sample_rate=sample_rate, workers=workers)
    try:
        yield pool
    finally:
        if own:
            pool.close()
        torch.set_num_threads(saved)
