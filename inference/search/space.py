"""What a search may change in a preset, derived from the registry and the preset itself (no hand list).

- continuous: `audible_params`, the continuous controls of modules that are on (LFOs, random generators and
  envelopes 3-6 only when they modulate something), most important first;
- categorical: every discrete control the sampler draws (`datagen.sampler.FIXED` names the ones it never
  touches: UI, MIDI and voice plumbing, huge ranges) in a module that is heard, plus the on-switches of the
  sound sources, filters and effects; ordinal ones with many classes (transposes, tempos, unison voices)
  move by musical steps, the others are drawn anew;
- wavetables: one per oscillator that is on, any table of the checkpoint's catalog (or the preset's own).
Modulation routing stays as the start has it. Besides `move` (one discrete change), `crossover` takes a whole
module from another preset (another proposal).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from datagen.registry import N_OSCILLATORS

ORDINAL_STEPS = (-12, -7, -5, -1, 1, 5, 7, 12)  # semitone-like steps for ordinal controls with many classes
ORDINAL_MIN_CLASSES = 9  # from this many classes on, a control moves by steps (tempos, transposes, voices)


@dataclass(frozen=True)
class Space:
    continuous: tuple[str, ...]  # searched continuous controls, most important first
    categorical: tuple[tuple[str, int], ...]  # (control, number of classes) a discrete move may change
    oscillators: tuple[int, ...]  # 1-based oscillators whose wavetable a move may swap (those that are on)


def audible_params(preset, *, registry, importance: np.ndarray, limit: int) -> list[str]:
    """Continuous parameters that can change the sound of `preset`, most important first (at most `limit`).

    importance: (n_continuous,) weights in registry.continuous order (the checkpoint's loss weights)."""
    sources = {m.source for m in preset.modulations}
    chosen = []
    for i, p in enumerate(registry.continuous):
        if not _heard(registry.module_of[p.name], p.name, preset, sources):
            continue
        if p.name.endswith("_random_phase"):
            continue  # searches render with random phase off (a deterministic objective)
        chosen.append((-float(importance[i]), i, p.name))
    return [name for _, _, name in sorted(chosen)[:limit]]


def _heard(module, name: str, preset, sources: set[str]) -> bool:
    if module.on_switch and module.on_switch != name and preset.categorical.get(module.on_switch, 1) == 0:
        return False  # the module is off
    return not (module.needs_modulation and module.name not in sources)  # an LFO that modulates nothing


def space(preset, *, registry, importance: np.ndarray, limit: int) -> Space:
    """The search space around `preset` (recompute it after a move switches a module on or off)."""
    from datagen.sampler import FIXED

    sources = {m.source for m in preset.modulations}
    switches = {m.on_switch for m in registry.modules if m.on_switch and not m.needs_modulation}
    categorical = []
    for p in registry.categorical:
        module = registry.module_of[p.name]
        if p.name in switches:
            categorical.append((p.name, p.n_classes))
        elif not FIXED.search(p.name) and p.n_classes > 1 and _heard(module, p.name, preset, sources):
            categorical.append((p.name, p.n_classes))
    oscillators = tuple(i for i in range(1, N_OSCILLATORS + 1) if preset.categorical.get(f"osc_{i}_on", 0))
    return Space(continuous=tuple(audible_params(preset, registry=registry, importance=importance, limit=limit)),
                 categorical=tuple(categorical), oscillators=oscillators)


def move(preset, space: Space, rng: np.random.Generator, *, catalog=None):
    """`preset` with one discrete change: a categorical control (drawn anew, or stepped when ordinal) or, when
    a catalog is given, an oscillator's wavetable. Every value stays inside its class range, so Vital loads it."""
    n_tables = len(catalog) if catalog is not None and space.oscillators else 0
    n_moves = len(space.categorical) + (len(space.oscillators) if n_tables else 0)
    if n_moves == 0:
        return preset
    k = int(rng.integers(n_moves))
    if k >= len(space.categorical):  # a wavetable swap
        osc = space.oscillators[k - len(space.categorical)]
        tables = list(preset.wavetables)
        tables[osc - 1] = catalog[int(rng.integers(n_tables))].data
        return replace(preset, wavetables=tuple(tables))
    name, n = space.categorical[k]
    now = preset.categorical[name]
    if n >= ORDINAL_MIN_CLASSES:
        steps = [s for s in ORDINAL_STEPS if 0 <= now + s < n and (abs(s) == 1 or n > 24)]
        new = now + int(rng.choice(steps)) if steps else now
    else:
        new = int(rng.choice([c for c in range(n) if c != now]))
    return preset.with_values(**{name: new})


def crossover(preset, donor, rng: np.random.Generator, *, registry):
    """`preset` with one module (an oscillator with its wavetable, a filter, an envelope, an effect, ...) set as
    `donor` sets it (`Preset.with_module`): one of those whose settings differ and would be heard (on in either
    preset; an LFO, random generator or envelope 3-6 only when `preset` routes it). Modulation routing stays."""
    sources = {m.source for m in preset.modulations}  # the routing the child keeps
    differing = [m for m in registry.modules
                 if (_heard(m, m.name, preset, sources) or _heard(m, m.name, donor, sources))
                 and preset.with_module(donor, m) != preset]
    if not differing:
        return preset
    return preset.with_module(donor, differing[int(rng.integers(len(differing)))])
