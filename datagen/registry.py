"""The parameter registry: every Vital control the model predicts, discovered from `vita` at run time.

Nothing here is a hand-written list of parameters. The names, ranges, defaults, scales and option names
come from `vita.Synth().get_controls()` / `get_control_details()`; the only knowledge written down is how a
control name maps to a module (its prefix) and which modules are heard only through modulation.

The 320 `modulation_N_*` slot controls (64 slots x amount/bipolar/bypass/power/stereo) are not synth
parameters: they belong to the modulation matrix (`datagen.preset.Modulation`).
Modulation sources and destinations are an allowlist taken from `vita.get_modulation_sources()` /
`vita.get_modulation_destinations()`: connecting anything else returns True and then segfaults Vital.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass

MODULATION_SLOTS = 64  # Vital's modulation matrix has 64 slots
_SLOT_RE = re.compile(r"^modulation_(\d+)_(amount|bipolar|bypass|power|stereo)$")

# The module vocabulary: Vital's fixed set of synth modules, named by their control prefix. Everything else
# that needs a module name (tiers, masks, searches, tutorials) imports these instead of spelling them again.
N_OSCILLATORS = 3
OSCILLATORS = tuple(f"osc_{i}" for i in range(1, N_OSCILLATORS + 1))  # osc_1..osc_3
FILTERS = ("filter_1", "filter_2")  # the voice's filters (the FX chain's filter is `filter_fx`, an effect)
ENVELOPES = tuple(f"env_{i}" for i in range(1, 7))
LFOS = tuple(f"lfo_{i}" for i in range(1, 9))
RANDOMS = tuple(f"random_{i}" for i in range(1, 5))
# Vital's effects in its default chain order (`effect_chain_order` 0), which is also alphabetical.
EFFECTS = ("chorus", "compressor", "delay", "distortion", "eq", "filter_fx", "flanger", "phaser", "reverb")
# Modules heard only when something modulates them (env_1 drives amplitude, env_2 is part of the core
# voice by convention of the data tiers). Tier 1-2 losses mask these; tier 3 does not.
MODULATORS = LFOS + RANDOMS + ENVELOPES[2:]
MODULES = OSCILLATORS + ("sample",) + FILTERS + ENVELOPES + LFOS + RANDOMS + EFFECTS  # each with its own prefix

# A control belongs to the module its name starts with: "<module>_...". Prefixes with an underscore are
# matched whole ("filter_fx_mix" is filter_fx, not a "filter" module); the others are the first word.
_PREFIXED = re.compile("^(" + "|".join(m for m in MODULES if "_" in m) + ")_")
_NAMED = frozenset(m for m in MODULES if "_" not in m)


@dataclass(frozen=True)
class Param:
    """One Vital control. `min`/`max` are raw Vital units (what `.vital` JSON stores)."""

    name: str
    module: str
    min: float
    max: float
    default: float
    scale: str  # Vital's display scale: Linear, Quadratic, Quartic, Exponential, SquareRoot, Indexed
    discrete: bool
    options: tuple[str, ...]  # option names for discrete controls; may be empty or shorter than the range

    @property
    def n_classes(self) -> int:
        """Number of distinct raw values of a discrete control (raw = min + index)."""
        return int(round(self.max - self.min)) + 1 if self.discrete else 0

    @property
    def span(self) -> float:
        return self.max - self.min


@dataclass(frozen=True)
class Module:
    name: str
    on_switch: str | None  # the `*_on` control that silences the whole module, if it has one
    needs_modulation: bool  # heard only through a modulation connection (LFOs, randoms, env 3-6)
    params: tuple[str, ...]


@dataclass(frozen=True)
class Registry:
    params: tuple[Param, ...]  # sorted by name
    modules: tuple[Module, ...]  # sorted by name
    sources: tuple[str, ...]  # modulation sources, vita's order
    destinations: tuple[str, ...]  # modulation destinations, vita's order
    vita_version: str

    @functools.cached_property
    def by_name(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}

    @functools.cached_property
    def continuous(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if not p.discrete)

    @functools.cached_property
    def categorical(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.discrete)

    @functools.cached_property
    def module_of(self) -> dict[str, Module]:
        return {name: m for m in self.modules for name in m.params}

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hash of names, kinds, ranges, options and the modulation allowlist. Datasets and checkpoints store
        it; a mismatch means labels would be read against the wrong controls."""
        blob = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> dict:
        """JSON-able description (what datasets and checkpoints embed). `vita_version` is not part of it:
        a new vita build with identical controls is compatible."""
        return {
            "params": [
                [p.name, p.module, _r(p.min), _r(p.max), p.discrete, list(p.options)] for p in self.params
            ],
            "sources": list(self.sources),
            "destinations": list(self.destinations),
        }

    def summary(self) -> dict:
        return {
            "vita_version": self.vita_version,
            "fingerprint": self.fingerprint,
            "params": len(self.params),
            "continuous": len(self.continuous),
            "categorical": len(self.categorical),
            "modules": len(self.modules),
            "sources": len(self.sources),
            "destinations": len(self.destinations),
            "modulation_slots": MODULATION_SLOTS,
        }


def _r(x: float) -> float:
    # Ranges come from float32 inside Vital; round so the fingerprint never depends on float printing.
    return round(float(x), 6)


def module_name(control: str) -> str:
    """The module a control belongs to, from its name alone."""
    m = _PREFIXED.match(control)
    if m:
        return m.group(1)
    head = control.split("_", 1)[0]
    if head in _NAMED:
        return head
    if control.startswith("macro_control_"):
        return "macro"
    return "global"  # voice, portamento, pitch bend, stereo routing, volume, oversampling, ...


def is_modulation_slot(control: str) -> bool:
    return _SLOT_RE.match(control) is not None


@functools.lru_cache(maxsize=1)
def load_registry() -> Registry:
    """Discover the registry from the installed vita. Cached per process; deterministic across processes."""
    import vita

    synth = vita.Synth()
    names = sorted(n for n in synth.get_controls() if not is_modulation_slot(n))
    params = []
    for name in names:
        d = synth.get_control_details(name)
        params.append(
            Param(
                name=name,
                module=module_name(name),
                min=float(d.min),
                max=float(d.max),
                default=float(d.default_value),
                scale=str(d.scale).rsplit(".", 1)[-1],
                discrete=bool(d.is_discrete),
                options=tuple(str(o) for o in d.options),
            )
        )
    del synth  # control handles must not outlive their Synth; none escape this function

    by_module: dict[str, list[str]] = {}
    for p in params:
        by_module.setdefault(p.module, []).append(p.name)
    modules = tuple(
        Module(
            name=m,
            on_switch=f"{m}_on" if f"{m}_on" in members else None,
            needs_modulation=m in MODULATORS,
            params=tuple(members),
        )
        for m, members in sorted(by_module.items())
    )
    return Registry(
        params=tuple(params),
        modules=modules,
        sources=tuple(vita.get_modulation_sources()),
        destinations=tuple(vita.get_modulation_destinations()),
        vita_version=str(vita.__version__),
    )
