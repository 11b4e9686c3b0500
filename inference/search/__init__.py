"""Searchers, registered by name in one place. Each is one module with `run(starts, tracker, ctx)`: it renders
candidates only through `tracker.evaluate` (budget, best, anytime curve, snapshots: `tracker.py`) and starts by
rendering its starts (the proposals: `inference.proposals`), so its result is never worse than the best of them.

- `cma`: CMA-ES over the audible continuous controls of one start at a time, restarting (IPOP) when it stalls;
- `random`: the starts, then random draws from the sampler (the baseline every method must beat);
- `evolve`: a (1 + lambda) evolution strategy over the whole preset: continuous controls, categorical choices,
  wavetables and whole modules taken from the other best starts, restarting from the next start when it stalls;
- `portfolio`: `evolve` from the best starts and `cma` from the first one, a generation each in turn.

A new searcher: one module beside these with `run(starts, tracker, ctx)`, and one line in `SEARCHERS`.
"""

from __future__ import annotations

import importlib

from inference.search.context import Context
from inference.search.tracker import Refinement, Snapshot, Tracker

SEARCHERS = {"cma": "inference.search.cmaes", "random": "inference.search.draws", "evolve": "inference.search.evolve",
             "portfolio": "inference.search.portfolio"}
DEFAULT = "portfolio"

__all__ = ["SEARCHERS", "DEFAULT", "Context", "Refinement", "Snapshot", "Tracker", "search"]


def search(name: str, starts: list, objective, *, pool, budget: int, ctx: Context, snapshots: tuple[int, ...] = (),
           timeout: float | None = None, show_progress: bool = False, on_progress=None) -> Refinement:
    """Run the searcher `name` from `starts` (presets; the first is the reference the result reports its
    initial loss against; none: the first preset the searcher renders is) for `budget` renders of `objective`
    through `pool`. See `Refinement`."""
    from tqdm import tqdm

    from inference.search.space import audible_params

    if name not in SEARCHERS:
        raise ValueError(f"unknown search {name!r}; choose one of {', '.join(SEARCHERS)}")
    if budget < 1:
        raise ValueError(f"a search needs a budget of at least 1 render, got {budget}")
    with tqdm(total=budget, desc=name, disable=not show_progress, dynamic_ncols=True) as bar:
        tracker = Tracker(objective, pool=pool, budget=budget, snapshots=snapshots, timeout=timeout,
                          on_progress=on_progress, bar=bar)
        importlib.import_module(SEARCHERS[name]).run(list(starts), tracker, ctx)
    start = starts[0] if starts else tracker.first_preset
    start_loss = tracker.history[0] if tracker.history else float("inf")
    params = audible_params(start, registry=ctx.registry, importance=ctx.importance, limit=ctx.max_params)
    return tracker.result(start=start, start_loss=start_loss, params=tuple(params), method=name)
