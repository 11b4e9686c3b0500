"""Refinement by listening: a registered search (`inference.search`) from one or more starts towards a clip.

`refine(starts, target, ...)` builds the objective (`inference.objective`: mel + short-window MR-STFT at the
clip's note and key-held time), opens a render pool unless one is given, and runs `config.search` for
`config.evals` renders.
The result is never worse than the first start (nor than any start: every searcher renders them first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datagen.console import ConfigError
from inference.objective import Objective, render_pool
from inference.search import DEFAULT, SEARCHERS, Context, Refinement, search


@dataclass(frozen=True, kw_only=True)
class RefineConfig:
    # renders spent, the starts' included (~34 s on 2 cores); 300 bought objective but not mss on 32 clips
    # (research/benchmarks.md, "The default budget: 200 renders")
    evals: int = 200
    timeout: float | None = None  # seconds; stop after the batch running at that time
    sigma: float = 0.1  # initial continuous step, in normalised [0, 1] units
    seed: int = 0
    threads: int | None = None  # render worker processes; None: one per core
    max_params: int = 48  # the most important audible continuous parameters searched
    search: str = DEFAULT  # a name in inference.search.SEARCHERS
    proposals: int = 32  # starts rendered first (inference.proposals; at most `evals`); 1: the prediction alone

    def __post_init__(self):
        if self.evals < 1:
            raise ConfigError(f"refine-evals must be >= 1, got {self.evals}")
        if not 0 < self.sigma <= 1:
            raise ConfigError(f"refine-sigma must be in (0, 1], got {self.sigma}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"refine-timeout must be positive, got {self.timeout}")
        if self.proposals < 1:
            raise ConfigError(f"proposals must be >= 1, got {self.proposals}")
        if self.max_params < 1 or (self.threads is not None and self.threads < 1):
            raise ConfigError("max-params and threads must be >= 1")
        if self.search not in SEARCHERS:
            raise ConfigError(f"unknown search {self.search!r}; choose one of {', '.join(SEARCHERS)}")


def refine(starts, target: np.ndarray, *, note: int, render, importance: np.ndarray, registry,
           config: RefineConfig = RefineConfig(), key_held: float | None = None, catalog=None, tier: int = 3,
           pool=None, show_progress: bool = True, on_progress=None, snapshots: tuple[int, ...] = ()) -> Refinement:
    """Search from `starts` (a preset, or a list: the first is the reference) towards `target` ((samples,) mono
    at render.sample_rate), rendering with the key held `key_held` seconds (None: `RenderConfig.for_clip`'s
    default). render: the base `datagen.render.RenderConfig` (the checkpoint's, `Pipeline.render`: sample rate,
    velocity).
    catalog / tier: the wavetables discrete moves may choose and the sampler tier of random draws (the
    checkpoint's; default: the procedural catalog, tier 3). pool: a `datagen.pool.RenderPool` to share (default:
    one of `config.threads` workers for this call). on_progress(done, total, best_loss) after each batch (the
    demo's progress bar). snapshots: budgets (<= config.evals) whose states to keep (`Refinement.snapshots`)."""
    from datagen.wavetables import default_catalog

    starts = list(starts) if isinstance(starts, (list, tuple)) else [starts]
    objective = Objective(target, note=note, render=render, key_held=key_held)
    ctx = Context(registry=registry, importance=np.asarray(importance, np.float64),
                  catalog=catalog if catalog is not None else default_catalog(), tier=tier, seed=config.seed,
                  sigma=config.sigma, max_params=config.max_params)
    with render_pool(config.threads, sample_rate=render.sample_rate, pool=pool) as pool:
        return search(config.search, starts, objective, pool=pool, budget=config.evals, ctx=ctx,
                      snapshots=snapshots, timeout=config.timeout, show_progress=show_progress,
                      on_progress=on_progress)
