"""Whole-preset search: a (1 + lambda) evolution strategy whose children move continuous controls, discrete
ones (a categorical choice, an oscillator's wavetable) and whole modules taken from the other best starts,
started from the best starts in turn.

Each generation: `LAMBDA` children of the current preset. A child either takes one module (an oscillator with
its wavetable, a filter, an envelope, an effect) from one of the `DONORS` best starts (`crossover`, with
probability `P_CROSS`: proposals from the bank and the network often match different parts of a sound), or moves
a random subset of the searched continuous controls by N(0, sigma) and, with probability `P_DISCRETE`, makes one
discrete move (`space.move`). The best child replaces the current preset when it is better; sigma grows on
success and shrinks on failure (a 1/5th-rule variant). After `STALL_GENERATIONS` generations without progress
the run restarts from the next start (then from the best so far): it never ends while budget is left. The
search space is re-derived whenever a move switches a module on or off (`space.space`).
"""

from __future__ import annotations

import numpy as np

from inference.search.context import Context, evaluate_starts
from inference.search.space import crossover, move, space

LAMBDA = 8  # children per generation: a multiple of the pool's workers keeps every core busy
P_DISCRETE = 0.3  # share of the other children that also make one discrete move
P_CROSS = 0.25  # share of children that take one module from another of the best starts (`crossover`)
DONORS = 8  # the best starts a crossover may take a module from
SUBSET = 8  # continuous controls each child moves (all of them when fewer are searched)
STALL_GENERATIONS = 6
SIGMA_UP, SIGMA_DOWN, SIGMA_MIN, SIGMA_MAX = 1.5, 0.85, 0.01, 0.5


def run(starts: list, tracker, ctx: Context) -> None:
    for _ in lane(evaluate_starts(starts, tracker), tracker, ctx):
        pass


def lane(ranked: list, tracker, ctx: Context):
    """Climbs from the (loss, preset) starts `ranked` in turn, then from the best so far, until the budget is
    spent; a generator that yields after every generation (`inference.search.portfolio` interleaves it)."""
    rng = np.random.default_rng(ctx.seed + 11)
    if not ranked:
        return
    k = 0
    while not tracker.done:
        if k < len(ranked):
            loss, current = ranked[k]
        else:  # every start used: again from the best so far
            loss, current = tracker.best_loss, tracker.best_preset
        donors = [p for _, p in ranked[:DONORS] if p is not current]
        yield from _climb(current, loss, tracker, ctx, rng, donors)
        k += 1
        if not tracker.done:
            tracker.restarts += 1


def _climb(current, loss: float, tracker, ctx: Context, rng: np.random.Generator, donors: list):
    sigma, stall = ctx.sigma, 0
    sp = space(current, registry=ctx.registry, importance=ctx.importance, limit=ctx.max_params)
    while not tracker.done and stall < STALL_GENERATIONS:
        children = [_child(current, sp, sigma, rng, ctx, donors) for _ in range(min(LAMBDA, tracker.left))]
        losses = tracker.evaluate(children, base=current)
        best = int(np.argmin(losses))
        if losses[best] < loss:
            switched = children[best].categorical != current.categorical
            current, loss, stall = children[best], losses[best], 0
            sigma = min(SIGMA_MAX, sigma * SIGMA_UP)
            if switched:
                sp = space(current, registry=ctx.registry, importance=ctx.importance, limit=ctx.max_params)
        else:
            stall += 1
            sigma = max(SIGMA_MIN, sigma * SIGMA_DOWN)
        yield


def _child(current, sp, sigma: float, rng: np.random.Generator, ctx: Context, donors: list):
    if donors and rng.random() < P_CROSS:
        return crossover(current, donors[int(rng.integers(len(donors)))], rng, registry=ctx.registry)
    child = current
    if sp.continuous:
        names = list(sp.continuous)
        chosen = rng.choice(len(names), size=min(SUBSET, len(names)), replace=False)
        child = child.with_values(**{names[i]: float(np.clip(current.continuous[names[i]] + rng.normal(0, sigma),
                                                               0.0, 1.0)) for i in chosen})
    if rng.random() < P_DISCRETE or not sp.continuous:
        child = move(child, sp, rng, catalog=ctx.catalog)
    return child
