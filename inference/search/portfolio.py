"""The default search: `evolve` from the best starts and CMA-ES from the first start, in turn over one budget.

After the starts (the proposals) are rendered, two lanes take turns, one generation each: the whole-preset
evolution strategy (`evolve.lane`) climbs from the best-ranked starts, and CMA-ES (`cmaes.lane`) refines the
continuous controls of the first start (the network's prediction, when the starts are proposals), then of the
best-ranked ones. Neither local search wins everywhere: on the 24 "score" clips of research/benchmarks.md each
was better on half of them (network+cma vs proposals+evolve at 200 renders), so running both costs each
half the renders and keeps whichever finds more (measured on the same 24 clips: 1.459 mss at 300 renders against
evolve's 1.525). Like every searcher it never ends while budget is left (each lane restarts on its own when it
stalls) and is deterministic for a seed.
"""

from __future__ import annotations

from inference.search import cmaes, evolve
from inference.search.context import Context, evaluate_starts


def run(starts: list, tracker, ctx: Context) -> None:
    ranked = evaluate_starts(starts, tracker)
    if not ranked:
        return
    first = next((r for r in ranked if r[1] is starts[0]), ranked[0])  # the reference: the network's argmax
    lanes = [evolve.lane(ranked, tracker, ctx), cmaes.lane([first] + [r for r in ranked if r is not first],
                                                          tracker, ctx)]
    while lanes and not tracker.done:
        for lane in list(lanes):
            if tracker.done:
                break
            if next(lane, StopIteration) is StopIteration:  # a lane with nothing left to search
                lanes.remove(lane)
