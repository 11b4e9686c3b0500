"""Refinement by listening: CMA-ES over the audible continuous parameters, seeded at the network's guess.

Objective: auraloss's multi-resolution STFT distance on a 64-band mel scale (FFT 1024 / 2048 / 4096) between the
render of a candidate at the clip's note and the target, both RMS-normalised (a recording's level says
nothing about the preset). Categorical choices and the modulation routing stay fixed: CMA-ES searches the
continuous parameters of modules that are switched on (LFOs, random generators and envelopes 3-6 only when
they modulate something), most important first, within [0, 1].

Each population is rendered in parallel threads, a fresh Synth per render (vita releases the GIL while it
renders); torch runs single-threaded meanwhile (its thread pool fights vita's threads otherwise). A render
that fails scores `FAILED_LOSS` and is counted. The result is never worse than the start.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

FAILED_LOSS = 1e3  # what a candidate that cannot be rendered (or renders NaN) scores
FFT_SIZES = (1024, 2048, 4096)  # 23-93 ms windows at 44.1 kHz, hop = FFT / 4
MEL_BINS = 64  # the most mel bands whose filters are all non-empty at FFT 1024 (128 leaves some empty: NaN)


@dataclass(frozen=True, kw_only=True)
class RefineConfig:
    evals: int = 500  # renders spent, the start's included
    timeout: float | None = None  # seconds; stop after the population running at that time
    sigma: float = 0.1  # CMA-ES initial step, in normalised [0, 1] units
    seed: int = 0
    threads: int | None = None  # render threads; None: os.cpu_count()
    max_params: int = 48  # the most important audible parameters searched

    def __post_init__(self):
        if self.evals < 1:
            raise ValueError(f"refine-evals must be >= 1, got {self.evals}")
        if not 0 < self.sigma <= 1:
            raise ValueError(f"refine-sigma must be in (0, 1], got {self.sigma}")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"refine-timeout must be positive, got {self.timeout}")
        if self.max_params < 1 or (self.threads is not None and self.threads < 1):
            raise ValueError("max-params and threads must be >= 1")


@dataclass(frozen=True)
class Refinement:
    preset: object  # the best preset found (the start when nothing beat it)
    initial_loss: float
    final_loss: float
    evaluations: int
    failures: int  # renders that failed and scored FAILED_LOSS
    seconds: float
    params: tuple[str, ...]  # the parameters searched
    history: tuple[float, ...] = field(default=(), repr=False)  # best loss after each population
    renders_per_s: float = 0.0
    # budget -> the state a run with `evals=budget` (same seed) would have ended in: the benchmark's budgets
    # 200 / 500 / 2000 come from one run of the largest (CMA-ES asks the same populations whatever the budget)
    snapshots: dict[int, "Snapshot"] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Snapshot:
    preset: object
    loss: float
    evaluations: int
    seconds: float  # wall time from the start of `refine` to this state


def audible_params(preset, *, registry, importance: np.ndarray, limit: int) -> list[str]:
    """Continuous parameters that can change the sound of `preset`, most important first (at most `limit`).

    importance: (n_continuous,) weights in registry.continuous order (the checkpoint's loss weights)."""
    sources = {m.source for m in preset.modulations}
    chosen = []
    for i, p in enumerate(registry.continuous):
        module = registry.module_of[p.name]
        if module.on_switch and module.on_switch != p.name and preset.categorical.get(module.on_switch, 1) == 0:
            continue  # the module is off
        if module.needs_modulation and module.name not in sources:
            continue  # an LFO / random / env 3-6 that modulates nothing
        if p.name.endswith("_random_phase"):
            continue  # refinement renders with random phase off (deterministic objective)
        chosen.append((-float(importance[i]), i, p.name))
    return [name for _, _, name in sorted(chosen)[:limit]]


class Objective:
    """loss(preset) = mel MR-STFT distance between its render at `note` and the target. Thread-safe."""

    def __init__(self, target: np.ndarray, *, note: int, sample_rate: int, render_config=None):
        import auraloss
        import torch

        from datagen.render import RenderConfig

        self.note = int(note)
        n = len(target)
        self.render_config = render_config or RenderConfig(sample_rate=sample_rate, render_length=n / sample_rate)
        self.target = torch.from_numpy(_normalised(np.asarray(target, np.float32)))[None, None]  # (1, 1, n)
        self.n = n
        self._stft = auraloss.freq.MultiResolutionSTFTLoss(
            fft_sizes=list(FFT_SIZES), hop_sizes=[n // 4 for n in FFT_SIZES], win_lengths=list(FFT_SIZES),
            scale="mel", n_bins=MEL_BINS, sample_rate=sample_rate, perceptual_weighting=False)

    def render(self, preset) -> np.ndarray:
        """A fresh Synth per render. A reused Synth starts each note by smoothing every control from the values
        of whatever it rendered before (and keeps its reverb's state), so a candidate's loss would depend on
        which candidate its thread rendered last: noisy, and not repeatable for a seed. A fresh one renders
        like `export.render` and the data set's pristine workers (~0.1 s more per render)."""
        from datagen.render import Renderer, deterministic

        return Renderer(self.render_config).render(deterministic(preset), note=self.note)

    def distance(self, audio: np.ndarray) -> float:
        import torch

        from datagen.features import fit_length

        x = _normalised(fit_length(np.asarray(audio, np.float32), self.n))
        if not np.isfinite(x).all():
            return FAILED_LOSS
        with torch.no_grad():
            loss = float(self._stft(torch.from_numpy(x)[None, None], self.target))
        return loss if np.isfinite(loss) else FAILED_LOSS

    def __call__(self, preset) -> tuple[float, bool]:
        """(loss, failed)."""
        try:
            loss = self.distance(self.render(preset))
        except Exception as e:  # a render failure is a score, never a crash of the search
            log.debug("render failed: %s", e)
            return FAILED_LOSS, True
        return loss, loss >= FAILED_LOSS


def _normalised(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return (x / rms * 0.1).astype(np.float32) if rms > 1e-8 else x


@contextmanager
def render_pool(threads: int | None):
    """A thread pool to render in (vita releases the GIL), with torch single-threaded meanwhile: its own thread
    pool fights the render threads otherwise. threads: None means os.cpu_count(). Shared by refinement and the
    benchmark's random search."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool:
            yield pool
    finally:
        torch.set_num_threads(saved)


def refine(preset, target: np.ndarray, *, note: int, sample_rate: int, importance: np.ndarray, registry,
           config: RefineConfig = RefineConfig(), show_progress: bool = True, on_progress=None,
           snapshots: tuple[int, ...] = ()) -> Refinement:
    """CMA-ES from `preset` towards `target` ((samples,) mono at sample_rate). on_progress(done, total,
    best_loss) is called after each population (the demo's progress bar). snapshots: budgets (<= config.evals)
    at which to keep the best preset so far (`Refinement.snapshots`)."""
    import cma
    from tqdm import tqdm

    t0 = time.perf_counter()
    objective = Objective(target, note=note, sample_rate=sample_rate)
    names = audible_params(preset, registry=registry, importance=importance, limit=config.max_params)
    x0 = np.array([preset.continuous[n] for n in names], np.float64)

    def candidate(x: np.ndarray):
        return preset.with_values(**dict(zip(names, np.clip(x, 0.0, 1.0).tolist())))

    with render_pool(config.threads) as pool:
        initial, failed = objective(preset)
        evals, failures, history = 1, int(failed), [initial]
        best_loss, best_x = initial, x0
        snaps = {}

        def snapshot():  # every budget the run has not outspent yet ends here, for now
            for b in snapshots:
                if evals <= b:
                    snaps[b] = (best_loss, best_x, evals, time.perf_counter() - t0)

        snapshot()
        bar = tqdm(total=config.evals, desc="refine", disable=not show_progress, dynamic_ncols=True)
        bar.update(1)
        if names and config.evals > 1:
            es = cma.CMAEvolutionStrategy(x0, config.sigma, {
                "bounds": [0.0, 1.0], "seed": config.seed + 1, "verbose": -9,  # cma's seed 0 means "random"
                "popsize": min(4 + int(3 * np.log(len(names))), config.evals - 1)})
            while not es.stop():
                xs = es.ask()
                if evals + len(xs) > config.evals:
                    break
                if config.timeout is not None and time.perf_counter() - t0 > config.timeout:
                    log.info("refinement timeout after %d evaluations", evals)
                    break
                results = list(pool.map(lambda x: objective(candidate(x)), xs))
                losses = [loss for loss, _ in results]
                es.tell(xs, losses)
                evals += len(xs)
                failures += sum(f for _, f in results)
                k = int(np.argmin(losses))
                if losses[k] < best_loss:
                    best_loss, best_x = losses[k], np.clip(xs[k], 0.0, 1.0)
                history.append(best_loss)
                snapshot()
                bar.update(len(xs))
                bar.set_postfix(best=f"{best_loss:.4f}", start=f"{initial:.4f}")
                if on_progress is not None:
                    on_progress(evals, config.evals, best_loss)
        bar.close()
    seconds = time.perf_counter() - t0
    if failures:
        log.warning("%d of %d refinement renders failed (scored %g)", failures, evals, FAILED_LOSS)
    improved = best_loss < initial
    return Refinement(preset=candidate(best_x) if improved else preset, initial_loss=initial,
                      final_loss=best_loss if improved else initial, evaluations=evals, failures=failures,
                      seconds=seconds, params=tuple(names), history=tuple(history), renders_per_s=evals / seconds,
                      snapshots={b: Snapshot(preset=candidate(x) if loss < initial else preset, loss=loss,
                                             evaluations=n, seconds=t) for b, (loss, x, n, t) in snaps.items()})
