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


def split(n: int, *, bank: bool) -> dict[str, int]:
    """How `n` proposals divide among the sources: a quarter from the network (its argmax included), half from
    the bank when there is one, the rest from the sampler."""
    network = min(n, max(1, n // 4))
    from_bank = (n - network) * 2 // 3 if bank else 0
    return {"network": network, "bank": from_bank, "sampler": n - network - from_bank}


def proposals(target, pipeline, *, n: int, prediction=None, bank=None, seed: int = 0) -> list:
    """`n` presets to start from (at least the network's argmax, which comes first: the reference a search
    reports against), then the bank's nearest, network samples and sampler draws (`split`). prediction:
    `pipeline.predict(target)` when already made."""
    from datagen.sampler import Sampler, SamplerConfig

    counts = split(max(1, n), bank=bank is not None)
    first = prediction.preset if prediction is not None else pipeline.predict(target).preset
    out = [first]
    if counts["bank"]:
        out += bank.nearest(target.audio, note=target.note.midi, k=counts["bank"])
    out += pipeline.samples(target, n=counts["network"] - 1, seed=seed)
    sampler = Sampler(SamplerConfig(tier=pipeline.draw_tier, seed=PROPOSAL_SEED + seed), registry=pipeline.registry,
                      catalog=pipeline.catalog)
    out += [sampler.sample(i) for i in range(counts["sampler"])]
    return out
