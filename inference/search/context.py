"""What a searcher is given besides its starts and its tracker, and the first step every searcher takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from datagen.registry import Registry
    from datagen.wavetables import Catalog


@dataclass(frozen=True)
class Context:
    registry: Registry
    importance: np.ndarray  # (n_continuous,) the checkpoint's weights: which controls to search first
    catalog: Catalog  # the tables a wavetable move may choose (the checkpoint's)
    tier: int = 3  # the sampler tier random draws come from (the model's)
    seed: int = 0
    sigma: float = 0.1  # initial continuous step, normalised units
    max_params: int = 48  # the most continuous controls one search moves


def evaluate_starts(starts: list, tracker) -> list[tuple[float, object]]:
    """Render every start (proposals are a search's first renders, within its budget); (loss, preset) sorted
    best first (a stable sort: ties keep the order given). Starts beyond the budget are not rendered."""
    starts = list(starts)[: tracker.left]
    losses = tracker.evaluate(starts)
    order = sorted(range(len(starts)), key=lambda k: losses[k])
    return [(losses[k], starts[k]) for k in order]
