"""The "realistic" presets: real presets perturbed, so controls co-vary as people set them.

The tiers of `datagen.sampler` draw ~90-280 controls independently and uniformly, and at a few thousand presets
a network learns nothing from them (research/learnability.md). A `Perturber` starts every preset from one of a
list of real presets (only the "build" half of the fixed split may be used: `datagen.preset.shared_split`) and
moves it a little: every free continuous control by a Gaussian step, a few discrete controls redrawn, some
oscillators moved by an octave, modulation amounts nudged; with `p_recombine`, some of its modules (an
oscillator with its wavetable, a filter, an envelope, an effect) are first taken from other bases. Like the
sampler, a preset is a pure function of (bases, config, index, attempt), so data sets resume and shard the same
way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from datagen.console import ConfigError
from datagen.dataset import as_stored
from datagen.preset import Preset
from datagen.registry import OSCILLATORS, Registry
from datagen.sampler import FIXED, TRANSPOSE_ZERO, seed_of


@dataclass(frozen=True, kw_only=True)
class PerturbConfig:
    seed: int = 0
    sigma: float = 0.08  # std of the step of a normalised continuous control
    p_redraw: float = 0.05  # chance that a discrete control is drawn anew (uniform over its classes)
    p_octave: float = 0.15  # chance that an oscillator that is on moves by an octave up or down
    amount_sigma: float = 0.1  # std of the step of a modulation amount (kept in [-1, 1])
    p_recombine: float = 0.0  # chance that a module (an oscillator, a filter, an envelope, ...) is taken from
    #                           another base before the steps (0: data sets made before recombination draw alike)

    def __post_init__(self):
        if not (0 <= self.sigma <= 1 and 0 <= self.p_redraw <= 1 and 0 <= self.p_octave <= 1
                and 0 <= self.amount_sigma <= 1 and 0 <= self.p_recombine <= 1):
            raise ConfigError(f"perturbation sizes must be in [0, 1]: {self}")


class Perturber:
    """`sample(index, attempt)` -> a perturbed copy of one of `bases` (chosen by the index), as stored."""

    def __init__(self, bases: list[Preset], config: PerturbConfig = PerturbConfig(), *, registry: Registry):
        if not bases:
            raise ConfigError("no presets to perturb")
        self.bases, self.config, self.registry = [as_stored(b) for b in bases], config, registry
        self.continuous = [p for p in registry.continuous if not FIXED.search(p.name)]
        self.categorical = [p for p in registry.categorical if not FIXED.search(p.name) and p.n_classes <= 128]

    @property
    def sampled_params(self) -> list[str]:
        return sorted(p.name for p in self.continuous + self.categorical)

    @property
    def sampled_modules(self) -> list[str]:
        return [m.name for m in self.registry.modules]  # a real preset sets every module

    def base(self, index: int, attempt: int = 0) -> Preset:
        """The preset `sample(index, attempt)` steps from: its base, with the modules recombination took from
        others. What a model that knew the bases exactly but heard none of the steps would answer
        (research/scripts/perturbation_floor.py)."""
        c = self.config
        base = self.bases[index % len(self.bases)]  # every base alike often, in turn
        if c.p_recombine:  # a stream of its own, so the steps draw as they did before recombination
            mix = np.random.default_rng(seed_of(c.seed, index, attempt, 6))
            for m in self.registry.modules:
                if mix.random() < c.p_recombine:
                    base = base.with_module(self.bases[int(mix.integers(len(self.bases)))], m)
        return base

    def sample(self, index: int, attempt: int = 0) -> Preset:
        c = self.config
        rng = np.random.default_rng(seed_of(c.seed, index, attempt, 5))
        base = self.base(index, attempt)
        cont, cat = dict(base.continuous), dict(base.categorical)
        for p in self.continuous:
            cont[p.name] = float(np.clip(cont[p.name] + rng.normal(0.0, c.sigma), 0.0, 1.0))
        for p in self.categorical:
            if rng.random() < c.p_redraw:
                cat[p.name] = int(rng.integers(p.n_classes))
        for o in OSCILLATORS:
            if cat[f"{o}_on"] and rng.random() < c.p_octave:
                cat[f"{o}_transpose"] = int(np.clip(cat[f"{o}_transpose"] + 12 * rng.choice([-1, 1]),
                                                    TRANSPOSE_ZERO - 48, TRANSPOSE_ZERO + 48))
        modulations = tuple(replace(m, amount=float(np.clip(m.amount + rng.normal(0.0, c.amount_sigma), -1, 1)))
                            for m in base.modulations)
        name = f"{base.name} perturbed seed{c.seed} #{index}"
        return as_stored(replace(base, continuous=cont, categorical=cat, modulations=modulations,
                                 meta={**base.meta, "preset_name": name}))
