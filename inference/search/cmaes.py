"""CMA-ES over a start's audible continuous controls (categorical choices, wavetables and routing stay), with
IPOP-style restarts: when a run stalls it starts again from the next start (then from the best so far with a
doubled population), so it never ends while budget is left."""

from __future__ import annotations

import numpy as np

from inference.search.context import Context, evaluate_starts
from inference.search.space import audible_params

STALL_GENERATIONS = 10  # generations without a new best before a run counts as stalled


def run(starts: list, tracker, ctx: Context) -> None:
    for _ in lane(evaluate_starts(starts, tracker), tracker, ctx):
        pass


def lane(ranked: list, tracker, ctx: Context):
    """CMA-ES runs from the (loss, preset) starts `ranked` in turn, then from the best so far with a doubled
    population, until the budget is spent; a generator that yields after every population
    (`inference.search.portfolio` interleaves it)."""
    import cma

    restart, popsize_factor = 0, 1
    while not tracker.done:
        if restart < len(ranked):
            origin = ranked[restart][1]
        else:  # every start used: from the best so far, with a larger population (IPOP)
            origin, popsize_factor = tracker.best_preset, popsize_factor * 2
        names = audible_params(origin, registry=ctx.registry, importance=ctx.importance, limit=ctx.max_params)
        if not names:
            if restart >= len(ranked):
                return  # nothing to search anywhere
            restart += 1
            continue
        x0 = np.array([origin.continuous[n] for n in names], np.float64)
        popsize = (4 + int(3 * np.log(len(names)))) * popsize_factor
        es = cma.CMAEvolutionStrategy(x0, ctx.sigma, {
            "bounds": [0.0, 1.0], "seed": ctx.seed + 1 + restart, "verbose": -9,  # cma's seed 0 means "random"
            "popsize": popsize})  # never from the budget left: a shorter run must ask the same populations
        best, stall = tracker.best_loss, 0
        while not tracker.done and not es.stop() and stall < STALL_GENERATIONS:
            xs = es.ask()
            batch = [origin.with_values(**dict(zip(names, np.clip(x, 0.0, 1.0).tolist()))) for x in xs]
            if len(batch) > tracker.left:  # the budget ends inside this population: its first candidates
                tracker.evaluate(batch[: tracker.left], base=origin)
                return
            losses = tracker.evaluate(batch, base=origin)
            es.tell(xs, losses)
            stall = 0 if tracker.best_loss < best else stall + 1
            best = tracker.best_loss
            yield
        restart += 1
        if not tracker.done:
            tracker.restarts += 1
