"""Random presets for training data: Latin-hypercube continuous values, categorical draws, wavetables and
modulation routing, in three tiers, deterministic from (seed, sample index, attempt).

- tier 1, core voice: oscillators, sample/noise, filters 1-2, envelopes 1-2, voice settings. Effects off,
  init wavetables, no modulation.
- tier 2 adds the effects chain (`datagen.registry.EFFECTS`: chorus, compressor, delay, distortion, eq, FX
  filter, flanger, phaser, reverb) and a wavetable from the catalog per oscillator.
- tier 3 adds modulation: 1-20 connections from the 32 sources to destinations of audible modules, which
  makes LFOs, random generators and envelopes 3-6 audible (their parameters are sampled too).

Latin-hypercube sampling is done per block of `LHS_BLOCK` consecutive samples: each block stratifies every
continuous parameter into LHS_BLOCK bins, so any sample is reproducible from its index alone (resume, shards)
without materialising a 200k x 293 design. Retries after a rejected render (`attempt > 0`) draw plain uniform
values from their own seed.

Versions (`SamplerConfig.version`): 2, the default, orders interchangeable slots canonically (oscillators that
are on fill osc_1.. from the lowest transpose up, the loudest at full level; filters that are on come first),
draws transposes as unisons / octaves / +-24 semitones and applies the ranges below to indexed controls too, so
the labels are a function of the sound (research/learnability.md). Version 1 is what banks and data sets made
before it hold; it is kept draw for draw so they rebuild their presets exactly.

The constraints below are heuristics that keep presets audible and varied; the generator still renders and
rejects silent / clipped / non-finite results.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

import numpy as np

from datagen.console import ConfigError
from datagen.dataset import as_stored
from datagen.preset import Modulation, Preset, init_preset
from datagen.registry import (EFFECTS, ENVELOPES, FILTERS, MODULATORS, N_OSCILLATORS, OSCILLATORS, Registry,
                              load_registry)

LHS_BLOCK = 1024
MAX_MODULATIONS = 20
TIERS = (1, 2, 3)
TRANSPOSE_ZERO = 48  # the class of a 0-semitone oscillator transpose (classes -48 .. +48)
VERSIONS = (1, 2)  # 2: canonical slots (below); 1 kept so banks and data sets built with it rebuild exactly


def _either(names: tuple[str, ...]) -> str:
    """A regex group of module names from the registry's vocabulary: ("osc_1", "osc_2") -> "(osc_1|osc_2)"."""
    return f"({'|'.join(names)})"


_OSC, _FILTER = _either(OSCILLATORS), _either(FILTERS)
_CORE = re.compile(f"^{_either(OSCILLATORS + ('sample',) + FILTERS + ENVELOPES[:2])}$")  # env 1-2: the voice
_EFFECTS = re.compile(f"^{_either(EFFECTS)}$")
_MODULATORS = re.compile(f"^{_either(MODULATORS)}$")

# Controls that stay at the init value: UI-only, MIDI/voice plumbing, or ranges too large to be labels
# (effect_chain_order has 362 880 permutations, transpose_quantize 8 192 bit masks). On-switches and
# destinations are drawn apart (below); the search (inference/search/space.py) reads this list too.
FIXED = re.compile(
    r"(_view_2d|view_spectrogram|_transpose_quantize|^effect_chain_order|^polyphony|^voice_|^mpe_|^legato|"
    r"^portamento|^pitch_bend_range|^beats_per_minute|^bypass|^volume|^velocity_track|^oversampling|"
    r"^stereo_|^pitch_wheel|^mod_wheel|_midi_track|^macro_control|_on$|_destination$|_random_phase$)"
)

# Normalised [lo, hi] ranges that keep a note audible within a 2 s render (Vital's raw units are
# display-transformed: the amp envelope's attack is quartic in seconds, levels are quadratic in gain).
_RANGES = {
    "env_1_delay": (0.0, 0.15),  # the amp envelope's delay: uniform over its range silenced ~1 in 4 presets
    "env_1_attack": (0.0, 0.35),  # raw^4 seconds: <= 0.48 s
    "env_1_hold": (0.0, 0.2),
    "env_1_sustain": (0.2, 1.0),
    "env_1_release": (0.0, 0.5),
    f"{_OSC}_level": (0.45, 1.0),
    "sample_level": (0.45, 1.0),
    f"{_FILTER}_cutoff": (0.25, 1.0),
    f"{_FILTER}_mix": (0.5, 1.0),
    f"{_OSC}_transpose": (0.25, 0.75),  # +-24 semitones of the +-48 range (a class: version 2 on)
    f"{_OSC}_unison_voices": (0.0, 0.5),  # 1-8 voices (a class: version 2 on)
    "[a-z_0-9]+_dry_wet": (0.0, 0.6),  # effects colour the note, never drown it
    "distortion_drive": (0.0, 0.7),
}
_RANGE_RES = [(re.compile(f"^{k}$"), v) for k, v in _RANGES.items()]


@dataclass(frozen=True)
class SamplerConfig:
    tier: int = 3
    seed: int = 0
    p_sample_on: float = 0.15  # probability that the sample/noise source is on
    max_modulations: int = MAX_MODULATIONS
    version: int = 2

    def __post_init__(self):
        if self.tier not in TIERS:
            raise ConfigError(f"tier must be one of {TIERS}, got {self.tier}")
        if self.version not in VERSIONS:
            raise ConfigError(f"sampler version must be one of {VERSIONS}, got {self.version}")


def sampled_modules(tier: int, registry: Registry) -> list[str]:
    """Modules whose parameters are drawn at a tier (everything else stays at the init preset)."""
    keep = []
    for m in registry.modules:
        if _CORE.match(m.name) or (tier >= 2 and _EFFECTS.match(m.name)) or (tier >= 3 and _MODULATORS.match(m.name)):
            keep.append(m.name)
    return keep


def drawn_switches(tier: int, registry: Registry) -> list[str]:
    """The on-switches and routing choices `Sampler.sample` draws apart from the free parameters (FIXED keeps
    them out of the plain draws): oscillators, sample, filters 1-2 and, from tier 2, the effects."""
    names = [f"osc_{i}_{k}" for i in range(1, N_OSCILLATORS + 1) for k in ("on", "destination")]
    names += ["sample_on", "sample_destination", "filter_1_on", "filter_2_on"]
    if tier >= 2:
        names += [m.on_switch for m in registry.modules if _EFFECTS.match(m.name) and m.on_switch]
    return names


def varied_params(tier: int, registry: Registry) -> frozenset[str]:
    """Every control the sampler varies at a tier; the rest stay at the init preset in its data, so a model
    cannot learn them from sound and a metric that counted them would flatter the constant."""
    modules = set(sampled_modules(tier, registry))
    free = {p.name for p in registry.params if p.module in modules and not FIXED.search(p.name)}
    return frozenset(free | set(drawn_switches(tier, registry)))


def draw_tier(tier: int) -> int:
    """The tier random draws come from for a model trained on `tier`: its own, or the richest for a model of
    real or perturbed presets (tier 0), which no sampler tier reproduces."""
    return tier if tier in TIERS else max(TIERS)


def seed_of(*parts: int) -> int:
    """A 64-bit seed from integers (sha256): independent streams per (seed, index, attempt, purpose)."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little")


class Sampler:
    def __init__(self, config: SamplerConfig, *, registry: Registry | None = None, catalog=None):
        self.config = config
        self.registry = registry or load_registry()
        if catalog is None and config.tier >= 2:
            from datagen.wavetables import default_catalog

            catalog = default_catalog()
        self.catalog = catalog
        self._base = init_preset(self.registry)
        modules = set(sampled_modules(config.tier, self.registry))
        free = [p for p in self.registry.params if p.module in modules and not FIXED.search(p.name)]
        self.continuous = [p for p in free if not p.discrete]
        self.categorical = [p for p in free if p.discrete]
        self._ranges = [self._range(p.name) for p in self.continuous]
        self._class_ranges = [(round(lo * (p.n_classes - 1)), round(hi * (p.n_classes - 1)) + 1)
                              for p, (lo, hi) in ((p, self._range(p.name)) for p in self.categorical)]
        self._modules = modules
        self._suffixes = {m.name: [p.name[len(m.name):] for p in self.registry.params if p.module == m.name]
                          for m in self.registry.modules}  # "osc_1" -> ["_level", "_on", ...]
        self._block: tuple[int, np.ndarray] | None = None  # (block index, (n_continuous, LHS_BLOCK) strata)

    @staticmethod
    def _range(name: str) -> tuple[float, float]:
        for rx, r in _RANGE_RES:
            if rx.match(name):
                return r
        return (0.0, 1.0)

    @property
    def sampled_params(self) -> list[str]:
        return sorted(p.name for p in self.continuous + self.categorical)

    @property
    def sampled_modules(self) -> list[str]:
        return sampled_modules(self.config.tier, self.registry)

    def _unit(self, index: int, attempt: int) -> np.ndarray:
        """(n_continuous,) values in [0, 1): a Latin-hypercube row for attempt 0, uniform for retries."""
        n = len(self.continuous)
        if attempt > 0:
            return np.random.default_rng(seed_of(self.config.seed, index, attempt, 1)).random(n)
        block, row = divmod(index, LHS_BLOCK)
        if self._block is None or self._block[0] != block:  # one permutation per parameter per block
            rng = np.random.default_rng(seed_of(self.config.seed, block, 0, 2))
            self._block = (block, np.argsort(rng.random((n, LHS_BLOCK)), axis=1))
        strata = self._block[1][:, row]
        jitter = np.random.default_rng(seed_of(self.config.seed, index, 0, 3)).random(n)
        return (strata + jitter) / LHS_BLOCK

    def sample(self, index: int, attempt: int = 0) -> Preset:
        """The preset for one sample index (and retry attempt). Pure function of (config, index, attempt)."""
        rng = np.random.default_rng(seed_of(self.config.seed, index, attempt, 4))
        cont = dict(self._base.continuous)
        cat = dict(self._base.categorical)
        for p, u, (lo, hi) in zip(self.continuous, self._unit(index, attempt), self._ranges):
            cont[p.name] = float(lo + u * (hi - lo))
        for p, (lo, hi) in zip(self.categorical, self._class_ranges):
            if self.config.version == 1:  # every class alike (its ranges reached continuous controls only)
                cat[p.name] = int(rng.integers(p.n_classes))
            else:
                cat[p.name] = int(rng.integers(lo, hi))

        # Sources: 1-3 oscillators, sometimes the sample; each routed to filter 1, filter 2, both, or direct.
        n_osc = int(rng.integers(1, N_OSCILLATORS + 1))
        if self.config.version == 1:
            on = set(rng.choice(N_OSCILLATORS, size=n_osc, replace=False).tolist())
        else:
            on = set(range(n_osc))  # reordered by `_canonical` below
        for i in range(N_OSCILLATORS):
            # Vital draws a random start phase from a global RNG unless this is 0: with two oscillators at
            # one pitch the phase decides what cancels, so labels would not determine the audio.
            cont[f"osc_{i + 1}_random_phase"] = 0.0
            cat[f"osc_{i + 1}_on"] = int(i in on)
            cat[f"osc_{i + 1}_destination"] = int(rng.choice([0, 1, 2, 4]))
        cat["sample_on"] = int(rng.random() < self.config.p_sample_on)
        cat["sample_destination"] = int(rng.choice([0, 1, 2, 4]))
        for f in FILTERS:
            cat[f"{f}_on"] = int(rng.random() < 0.6)
        wavetables = (None,) * N_OSCILLATORS
        if self.config.tier >= 2:
            for m in self.registry.modules:
                if _EFFECTS.match(m.name) and m.on_switch:
                    cat[m.on_switch] = int(rng.random() < 0.3)
            wavetables = tuple(self.catalog[int(rng.integers(len(self.catalog)))].data for _ in range(N_OSCILLATORS))
        if self.config.version >= 2:
            for o in OSCILLATORS:
                cat[f"{o}_transpose"] = self._transpose(rng, cat[f"{o}_transpose"])
            wavetables = self._canonical(cont, cat, wavetables)
        preset = Preset(continuous=cont, categorical=cat, wavetables=wavetables,
                        meta={"preset_name": f"tier{self.config.tier} seed{self.config.seed} #{index}"},
                        extras=dict(self._base.extras))
        if self.config.tier >= 3:
            preset = replace(preset, modulations=self._modulations(rng, preset))
        return as_stored(preset)

    def _transpose(self, rng: np.random.Generator, uniform: int) -> int:
        """Version 2: an oscillator's transpose class (48 = none) is none half the time, a whole number of
        octaves (+-1, +-2) a quarter, and the uniform +-24 semitone draw otherwise: how sound designers stack
        oscillators (unisons and octaves, sometimes a fifth), where a uniform +-48 made most notes unpitched."""
        u = rng.random()
        if u < 0.5:
            return TRANSPOSE_ZERO
        if u < 0.75:
            return TRANSPOSE_ZERO + 12 * int(rng.choice([-2, -1, 1, 2]))
        return uniform

    def _canonical(self, cont: dict, cat: dict, wavetables: tuple) -> tuple:
        """Version 2: put interchangeable slots in one order the audio can tell (edits `cont` / `cat` in place,
        returns the wavetables in the new slot order). Why: with 1-3 identical oscillators on at random slots
        (and two identical filters), which slot holds a sound is a coin the audio never shows, so a slot-wise
        loss is minimised only by the mean (research/learnability.md, the one-oscillator probe).
        - oscillators that are on fill osc_1, osc_2, ... from the lowest transpose up (then the loudest); the
          loudest is at full
          level and the others keep their level relative to it (features are loudness-normalised, so only
          ratios are heard);
        - filters that are on come first, the lower cutoff first; the oscillators' and the sample's
          destinations follow their filter.
        Modulations are drawn after this, so they route to the reordered slots."""
        oscs = sorted(range(N_OSCILLATORS), key=lambda i: (-cat[f"{OSCILLATORS[i]}_on"],
                                                          cat[f"{OSCILLATORS[i]}_transpose"],
                                                          -cont[f"{OSCILLATORS[i]}_level"]))
        self._permute(OSCILLATORS, oscs, cont, cat)
        on = [o for o in OSCILLATORS if cat[f"{o}_on"]]
        loudest = max(cont[f"{o}_level"] for o in on)
        for o in on:
            cont[f"{o}_level"] = cont[f"{o}_level"] / loudest
        filters = sorted(range(len(FILTERS)), key=lambda i: (-cat[f"{FILTERS[i]}_on"], cont[f"{FILTERS[i]}_cutoff"]))
        if filters != list(range(len(FILTERS))):
            self._permute(FILTERS, filters, cont, cat)
            swap = {0: 1, 1: 0}  # destination 0 = filter 1, 1 = filter 2 (2 both, 4 direct: unchanged)
            for d in [f"{o}_destination" for o in OSCILLATORS] + ["sample_destination"]:
                cat[d] = swap.get(cat[d], cat[d])
        return tuple(wavetables[i] for i in oscs)

    def _permute(self, modules: tuple[str, ...], order: list[int], cont: dict, cat: dict) -> None:
        """Slot k of `modules` takes every control of slot order[k] (same suffix, e.g. osc_3_level -> osc_1_level)."""
        for values in (cont, cat):
            old = dict(values)
            for k, src in enumerate(order):
                for suffix in self._suffixes[modules[k]]:
                    name = f"{modules[k]}{suffix}"
                    if name in values:
                        values[name] = old[f"{modules[src]}{suffix}"]

    def _modulations(self, rng: np.random.Generator, preset: Preset) -> tuple[Modulation, ...]:
        reg = self.registry
        module_of = reg.module_of

        def audible(dest: str) -> bool:
            m = module_of.get(dest)
            if m is None:
                return True  # e.g. per-slot destinations outside the synth parameters
            return m.name in self._modules and (m.on_switch is None or preset.categorical[m.on_switch] == 1)

        destinations = [d for d in reg.destinations if audible(d)]
        k = int(rng.integers(1, self.config.max_modulations + 1))
        pairs: set[tuple[str, str]] = set()
        out = []
        for _ in range(4 * k):
            if len(out) == k:
                break
            src = str(reg.sources[int(rng.integers(len(reg.sources)))])
            dst = destinations[int(rng.integers(len(destinations)))]
            if (src, dst) in pairs:
                continue
            pairs.add((src, dst))
            amount = float(rng.uniform(0.1, 1.0) * rng.choice([-1.0, 1.0]))
            power = float(rng.uniform(-5, 5)) if rng.random() < 0.3 else 0.0
            out.append(Modulation(source=src, destination=dst, amount=amount, bipolar=bool(rng.random() < 0.5),
                                  power=power, stereo=bool(rng.random() < 0.2)))
        return tuple(out)

