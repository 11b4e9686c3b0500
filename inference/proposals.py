"""Proposals: the first presets a search renders, from several sources, so it never starts from one point.

- the network: its argmax prediction, then presets drawn from its categorical / wavetable distributions with
  its continuous values jittered (`Pipeline.samples`);
- the preset bank (`datagen.bank`), when one is given: the entries whose sound is nearest the clip's;
- the sampler: random draws of the model's tier (seeds of their own: never a data set's presets).
All are rendered at the clip's note by the search itself (`inference.search.context.evaluate_starts`).
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)

PROPOSAL_SEED = 7_000_101  # + the run's seed; distinct from the random search's draws
DEFAULT_BANK = "assets/bank.npz"  # inside the inference package (package data), built by `python -m datagen bank`


@functools.lru_cache(maxsize=4)
def load_bank(path: str | None = None):
    """The bank at `path`, or the one shipped inside the package (None when the package holds none).
    datagen.bank.BankError for a file that is not a usable bank."""
    from importlib import resources

    from datagen.bank import Bank

    if path is not None:
        return Bank.load(path)
    shipped = resources.files("inference").joinpath(DEFAULT_BANK)
    if not shipped.is_file():
        log.info("no preset bank shipped in this install: proposals come from the network and the sampler")
        return None
    with resources.as_file(shipped) as p:
        return Bank.load(p)


SOURCES = ("network", "bank", "sampler")


def split(n: int, *, sources: tuple[str, ...] = SOURCES) -> dict[str, int]:
    """How `n` proposals divide among `sources` (a subset of SOURCES; drop "bank" when there is none): with all
    three, the network and the bank share them nearly evenly and the sampler gets one in 16 (on clips no data set
    holds, bank neighbours and network samples win far more often than sampler draws: research/benchmarks.md);
    a single source gets all of them."""
    unknown = set(sources) - set(SOURCES)
    if unknown or not sources:
        raise ValueError(f"proposal sources must be some of {', '.join(SOURCES)}, got {sources}")
    counts = dict.fromkeys(SOURCES, 0)
    others = [s for s in SOURCES if s in sources and s != "sampler"]
    if "sampler" in sources:
        counts["sampler"] = n // 16 if others else n
    left = n - counts["sampler"]
    for k, s in enumerate(others):  # the first gets the odd one: the network (its argmax) when it is a source
        counts[s] = left // len(others) + (1 if k < left % len(others) else 0)
    return counts


def proposals(target, pipeline, *, n: int, prediction=None, bank=None, seed: int = 0,
              sources: tuple[str, ...] = SOURCES) -> list:
    """`n` presets to start from: with the network among `sources`, its argmax first (the reference a search
    reports against), then the bank's nearest, network samples and sampler draws (`split`; no bank: its share goes
    to the others). prediction: `pipeline.predict(target)` when already made."""
    from datagen.sampler import Sampler, SamplerConfig

    counts = split(max(1, n), sources=tuple(s for s in sources if s != "bank" or bank is not None))
    out = []
    if counts["network"]:
        out.append(prediction.preset if prediction is not None else pipeline.predict(target).preset)
    if counts["bank"]:
        out += bank.nearest(target.audio, note=target.note.midi, k=counts["bank"])
    out += pipeline.samples(target, n=counts["network"] - 1, seed=seed)
    sampler = Sampler(SamplerConfig(tier=pipeline.draw_tier, seed=PROPOSAL_SEED + seed), registry=pipeline.registry,
                      catalog=pipeline.catalog)
    out += [sampler.sample(i) for i in range(counts["sampler"])]
    return out
