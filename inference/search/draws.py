"""Random search: the starts, then presets drawn by the sampler of the model's tier (`datagen.sampler`, a pure
function of (seed, index): seeds of its own, so it never draws a data set's presets)."""

from __future__ import annotations

from inference.search.context import Context, evaluate_starts

SEED = 7_000_003  # + the search's seed: data sets are generated with small seeds
BATCH = 16  # presets per pool call


def run(starts: list, tracker, ctx: Context) -> None:
    from datagen.sampler import Sampler, SamplerConfig

    evaluate_starts(starts, tracker)
    sampler = Sampler(SamplerConfig(tier=ctx.tier, seed=SEED + ctx.seed), registry=ctx.registry, catalog=ctx.catalog)
    index = 0
    while not tracker.done:
        n = min(BATCH, tracker.left)
        tracker.evaluate([sampler.sample(index + k) for k in range(n)])
        index += n
