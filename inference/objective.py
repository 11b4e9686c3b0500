"""The objective every search minimises, and the pool it listens through.

loss = auraloss's multi-resolution STFT distance on a 64-band mel scale (FFT 1024 / 2048 / 4096) between the
render of a candidate at the clip's note (the key held as long as in the clip) and the target, both
RMS-normalised (a recording's level says nothing about the preset). The benchmark scores with a different
yardstick on purpose (`inference.metrics`), so no search is graded by its own loss.

Renders go through a `datagen.pool.RenderPool` (forks of pristine worker processes, one per core:
deterministic, crash-isolated, a search's base preset loaded once per worker and only changed controls set per
candidate); each loss is computed as its render arrives, with torch single-threaded (`render_pool`): its own
thread pool fights the render processes otherwise. A render that fails or crashes scores `FAILED_LOSS`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import numpy as np

log = logging.getLogger(__name__)

FAILED_LOSS = 1e3  # what a candidate that cannot be rendered (or renders NaN) scores
FFT_SIZES = (1024, 2048, 4096)  # 23-93 ms windows at 44.1 kHz, hop = FFT / 4
MEL_BINS = 64  # the most mel bands whose filters are all non-empty at FFT 1024 (128 leaves some empty: NaN)
# Power floor of every STFT bin (auraloss clamps |X|^2 at eps), both signals at RMS 0.1: |X| >= 0.01, about 70 dB
# under a full-scale partial. With auraloss's default (1e-8) the log-magnitude term compared the silence after a
# pluck's release bin by bin: a 16-bit WAV's quantisation noise against a render's exact zeros cost the clip's
# own preset a loss of ~1.0 (research/benchmarks.md, "objective floor"); at 1e-4 it scores 0.02 and every
# other candidate keeps its ranking.
POWER_FLOOR = 1e-4


class Objective:
    """loss(preset) = mel MR-STFT distance between its render at `note` and the target. Renders go through a
    `RenderPool`; `scores` computes each loss in the pool's thread as its render arrives. Thread-safe.

    target: (samples,) mono at `render.sample_rate`. render: the base `datagen.render.RenderConfig` (a checkpoint's,
    `Pipeline.render`: its sample rate and velocity); candidates render the length of the target with the key held
    `key_held` seconds (None: as `render` holds it, 3/4 of the target at most; `RenderConfig.for_clip`)."""

    def __init__(self, target: np.ndarray, *, note: int, render, key_held: float | None = None):
        import auraloss
        import torch

        self.note = int(note)
        n = len(target)
        sample_rate = render.sample_rate
        # the key held as long as in the clip when known, else as training data holds it
        self.render_config = render.for_clip(seconds=n / sample_rate, key_held=key_held)
        self.target = torch.from_numpy(_normalised(np.asarray(target, np.float32)))[None, None]  # (1, 1, n)
        self.n = n
        self._stft = auraloss.freq.MultiResolutionSTFTLoss(
            fft_sizes=list(FFT_SIZES), hop_sizes=[n // 4 for n in FFT_SIZES], win_lengths=list(FFT_SIZES),
            scale="mel", n_bins=MEL_BINS, sample_rate=sample_rate, perceptual_weighting=False, eps=POWER_FLOOR)

    def distance(self, audio: np.ndarray) -> float:
        import torch

        from datagen.features import fit_length

        x = _normalised(fit_length(np.asarray(audio, np.float32), self.n))
        if not np.isfinite(x).all():
            return FAILED_LOSS
        with torch.no_grad():
            loss = float(self._stft(torch.from_numpy(x)[None, None], self.target))
        return loss if np.isfinite(loss) else FAILED_LOSS

    def renders(self, presets, *, pool, base=None, labels=None, then=None) -> list:
        """`pool.render` of the presets at this objective's note and key-held time, random phase off
        (`datagen.render.deterministic`): a list of `datagen.pool.Rendered`."""
        from datagen.render import deterministic

        return pool.render([deterministic(p) for p in presets], note=self.note, config=self.render_config,
                           base=deterministic(base) if base is not None else None, then=then, labels=labels)

    def scores(self, presets, *, pool, base=None, labels=None) -> list[tuple[float, bool]]:
        """(loss, failed) per preset; a render that fails or crashes scores FAILED_LOSS."""
        out = []
        for r in self.renders(presets, pool=pool, base=base, labels=labels, then=self.distance):
            if not r.ok:
                log.debug("render failed: %s", r.error)
            loss = r.value if r.ok else FAILED_LOSS
            out.append((loss, loss >= FAILED_LOSS))
        return out


def _normalised(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return (x / rms * 0.1).astype(np.float32) if rms > 1e-8 else x


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
