"""The preset model: what the network predicts, and its exact `.vital` JSON form.

A `Preset` holds
- continuous controls normalised linearly to [0, 1]: `x = (raw - min) / (max - min)`;
- categorical controls as indices: `raw = min + index` (Vital stores discrete values as floats);
- one wavetable per oscillator in Vital's JSON form (None keeps the template's table);
- the modulation matrix as a list of `Modulation`s (at most 64, Vital's slot count).

Conversion to `.vital` edits the `to_json()` output of a real Synth, so every field Vital expects is present,
then writes a real `synth_version`. Never use vita's `set_normalized()`: it applies Vital's display scale,
which is wrong for the 30 exponential controls; the linear mapping above is the contract of this module.
Every raw value written is clamped to its [min, max]: out-of-range `chorus_voices` or `filter_*_keytrack`
segfault Vital.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from datagen.registry import (MODULATION_SLOTS, N_OSCILLATORS, OSCILLATORS, Registry, is_modulation_slot,
                              load_registry)

log = logging.getLogger(__name__)

SYNTH_VERSION = "1.5.5"  # the last Vital release; vita itself writes "99999.9.9", which Vital refuses
_NON_CONTROL_SETTINGS = ("modulations", "wavetables", "lfos", "sample")
_META_FIELDS = ("preset_name", "author", "comments", "preset_style", "macro1", "macro2", "macro3", "macro4")


class PresetError(ValueError):
    """A file or JSON document that cannot be read as a Vital preset."""


@dataclass(frozen=True)
class Modulation:
    """One modulation-matrix connection, in Vital's own units."""

    source: str  # one of vita.get_modulation_sources()
    destination: str  # one of vita.get_modulation_destinations()
    amount: float  # [-1, 1]
    bipolar: bool = False
    power: float = 0.0  # curve shape, [-10, 10]
    stereo: bool = False


@dataclass(frozen=True)
class Preset:
    continuous: dict[str, float]  # every continuous control, normalised to [0, 1]
    categorical: dict[str, int]  # every discrete control, as an index: raw = min + index
    wavetables: tuple[dict | None, ...] = (None,) * N_OSCILLATORS  # Vital wavetable JSON per oscillator
    modulations: tuple[Modulation, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)  # preset_name, author, comments, macro names, ...
    extras: dict = field(default_factory=dict)  # passthrough settings: "sample" (audio), "lfos" (shapes)

    @property
    def name(self) -> str:
        return self.meta.get("preset_name", "")

    def with_values(self, **values: float | int) -> "Preset":
        """A copy with some controls changed; continuous values normalised, categorical as indices."""
        cont, cat = dict(self.continuous), dict(self.categorical)
        for k, v in values.items():
            if k in cont:
                cont[k] = float(v)
            elif k in cat:
                cat[k] = int(v)
            else:
                raise KeyError(f"unknown control {k!r}")
        return replace(self, continuous=cont, categorical=cat)

    def with_module(self, donor: "Preset", module) -> "Preset":
        """A copy whose `module` (a `datagen.registry.Module`: every control of it, its on-switch included, and
        an oscillator's wavetable) is set as `donor` sets it. Modulation routing, LFO shapes and samples stay."""
        values = {p: donor.continuous[p] if p in donor.continuous else donor.categorical[p] for p in module.params}
        out = self.with_values(**values)
        if module.name in OSCILLATORS:
            i = OSCILLATORS.index(module.name)
            out = replace(out, wavetables=out.wavetables[:i] + (donor.wavetables[i],) + out.wavetables[i + 1:])
        return out

    def raw(self, name: str, registry: Registry | None = None) -> float:
        """The raw Vital value of one control (what the `.vital` file stores)."""
        reg = registry or load_registry()
        p = reg.by_name[name]
        if p.discrete:
            return p.min + min(max(self.categorical[name], 0), p.n_classes - 1)
        return p.min + min(max(self.continuous[name], 0.0), 1.0) * p.span

    # ---- .vital JSON ---------------------------------------------------------------------------------

    def to_vital(self, registry: Registry | None = None) -> dict:
        """The `.vital` JSON document (a dict) for this preset."""
        reg = registry or load_registry()
        doc = dict(template_doc())
        settings = dict(doc["settings"])
        for p in reg.params:
            settings[p.name] = self.raw(p.name, reg)
        slots = [{"destination": "", "source": ""} for _ in range(MODULATION_SLOTS)]
        for i in range(1, MODULATION_SLOTS + 1):
            settings.update(
                {f"modulation_{i}_amount": 0.0, f"modulation_{i}_bipolar": 0.0, f"modulation_{i}_bypass": 0.0,
                 f"modulation_{i}_power": 0.0, f"modulation_{i}_stereo": 0.0}
            )
        if len(self.modulations) > MODULATION_SLOTS:
            raise PresetError(f"{len(self.modulations)} modulations; Vital has {MODULATION_SLOTS} slots")
        for i, m in enumerate(self.modulations, start=1):
            if m.source not in reg.sources or m.destination not in reg.destinations:
                # Vital accepts unlisted names and then segfaults: refuse here, loudly.
                raise PresetError(f"modulation {m.source} -> {m.destination} is not in vita's allowlist")
            slots[i - 1] = {"destination": m.destination, "source": m.source}
            settings[f"modulation_{i}_amount"] = _clamp(m.amount, -1.0, 1.0)
            settings[f"modulation_{i}_bipolar"] = float(bool(m.bipolar))
            settings[f"modulation_{i}_power"] = _clamp(m.power, -10.0, 10.0)
            settings[f"modulation_{i}_stereo"] = float(bool(m.stereo))
        settings["modulations"] = slots
        wavetables = list(settings["wavetables"])
        for i, wt in enumerate(self.wavetables):
            if wt is not None:
                wavetables[i] = wt
        settings["wavetables"] = wavetables
        settings.update(self.extras)
        doc["settings"] = settings
        doc.update({k: v for k, v in self.meta.items() if k in _META_FIELDS})
        doc["synth_version"] = SYNTH_VERSION
        return doc

    def to_vital_text(self, registry: Registry | None = None) -> str:
        return json.dumps(self.to_vital(registry))

    @classmethod
    def from_vital(cls, doc: object, *, registry: Registry | None = None, source: str = "preset") -> "Preset":
        """Read a parsed `.vital` document. Unknown controls are ignored and out-of-range values clamped,
        each reported in one warning line; anything that is not a preset raises `PresetError`."""
        reg = registry or load_registry()
        if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict):
            raise PresetError(f"{source}: JSON is not a Vital preset (no 'settings' object)")
        settings = doc["settings"]
        unknown = sorted(
            k for k in settings if k not in reg.by_name and k not in _NON_CONTROL_SETTINGS and not is_modulation_slot(k)
        )
        if unknown:
            log.warning("%s: ignored %d unknown parameter(s): %s", source, len(unknown), ", ".join(unknown[:8])
                        + (" ..." if len(unknown) > 8 else ""))
        continuous, categorical, clamped = {}, {}, []
        for p in reg.params:
            raw = number(settings.get(p.name, p.default), f"parameter {p.name}", source)
            if raw < p.min or raw > p.max:
                clamped.append(f"{p.name}={raw:g} -> [{p.min:g}, {p.max:g}]")
                raw = _clamp(raw, p.min, p.max)
            if p.discrete:
                categorical[p.name] = int(round(raw - p.min))
            else:
                continuous[p.name] = (raw - p.min) / p.span if p.span > 0 else 0.0
        if clamped:
            log.warning("%s: clamped %d out-of-range value(s): %s", source, len(clamped), "; ".join(clamped[:4])
                        + (" ..." if len(clamped) > 4 else ""))
        return cls(
            continuous=continuous,
            categorical=categorical,
            wavetables=_read_wavetables(settings),
            modulations=_read_modulations(settings, reg, source),
            meta={k: doc[k] for k in _META_FIELDS if isinstance(doc.get(k), str)},
            extras={k: settings[k] for k in ("lfos", "sample") if k in settings},
        )


def _read_wavetables(settings: dict) -> tuple[dict | None, ...]:
    tables = settings.get("wavetables")
    if not isinstance(tables, list):
        return (None,) * N_OSCILLATORS
    return tuple(t if isinstance(t, dict) else None for t in (tables + [None] * N_OSCILLATORS)[:N_OSCILLATORS])


def _read_modulations(settings: dict, reg: Registry, source: str) -> tuple[Modulation, ...]:
    slots = settings.get("modulations")
    if not isinstance(slots, list):
        return ()
    out, dropped = [], []
    for i, slot in enumerate(slots[:MODULATION_SLOTS], start=1):
        if not isinstance(slot, dict) or not slot.get("source") or not slot.get("destination"):
            continue
        src, dst = slot["source"], slot["destination"]
        field = {k: number(settings.get(f"modulation_{i}_{k}", 0.0), f"modulation_{i}_{k}", source)
                 for k in ("bypass", "amount", "bipolar", "power", "stereo")}
        if field["bypass"]:
            continue  # a bypassed connection has no effect on the sound
        if not isinstance(src, str) or not isinstance(dst, str) or src not in reg.sources or dst not in reg.destinations:
            dropped.append("->".join(x[:40] if isinstance(x, str) else _short(x) for x in (src, dst)))
            continue
        out.append(Modulation(source=src, destination=dst, amount=_clamp(field["amount"], -1.0, 1.0),
                              bipolar=bool(field["bipolar"]), power=_clamp(field["power"], -10.0, 10.0),
                              stereo=bool(field["stereo"])))
    if dropped:
        log.info("%s: dropped %d modulation(s) outside vita's allowlist: %s", source, len(dropped), ", ".join(dropped))
    return tuple(out)


def number(value: object, key: str, source: str) -> float:
    """A JSON value that must be a finite number, as a float; PresetError naming `key` otherwise (a string, a
    bool, null, NaN/Infinity, which Python's json accepts, or an integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PresetError(f"{source}: {key} has non-numeric value {_short(value)}")
    try:
        x = float(value)
    except OverflowError:
        raise PresetError(f"{source}: {key} is out of range (a {value.bit_length()}-bit integer)") from None
    if not math.isfinite(x):
        raise PresetError(f"{source}: {key} is not a finite number ({x})")
    return x


def _short(value: object, limit: int = 40) -> str:
    """repr() for messages, cut to `limit` characters (a value from a file can be megabytes long)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit integer"
    text = repr(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clamp(x: float, lo: float, hi: float) -> float:
    return float(min(max(x, lo), hi))


@functools.lru_cache(maxsize=1)
def template_doc() -> dict:
    """Vital's init preset as its `.vital` JSON document (a dict), shared: never mutate it (shallow-copy it
    and replace nested objects instead)."""
    # Parsed once: a fresh parse would cost ~2 ms per preset (the template embeds a noise sample). Callers
    # shallow-copy it and replace nested objects instead of mutating them, so sharing is safe.
    import vita

    return json.loads(vita.Synth().to_json())


def init_preset(registry: Registry | None = None) -> Preset:
    """Vital's init preset (one saw oscillator, filters and effects off)."""
    return Preset.from_vital(template_doc(), registry=registry, source="init preset")


def shared_presets_dir() -> Path:
    """Real human-made presets for tests and benchmarks: `$VITAL_PRESETS`, else `../shared/presets` beside
    the repository checkout (they are not redistributed in the repo; see that folder's README)."""
    env = os.environ.get("VITAL_PRESETS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "presets"


SPLITS = ("build", "score")  # ../shared/presets/README.md: build data and banks from one, benchmark on the other


def shared_split(split: str, folder: str | Path | None = None) -> list[Path]:
    """The real presets of one half of the fixed split that `folder`/README.md (default: the shared presets)
    lists under **build** or **score**: build data sets and banks only from "build", score only on "score".
    PresetError when the README or the split is missing."""
    if split not in SPLITS:
        raise PresetError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    folder = Path(folder) if folder is not None else shared_presets_dir()
    try:
        text = (folder / "README.md").read_text(encoding="utf-8")
    except OSError:
        raise PresetError(f"{folder}: no README.md stating the build / score split") from None
    parts = text.split(f"**{split}**")
    if len(parts) < 2:
        raise PresetError(f"{folder}/README.md: no **{split}** list")
    paths = []
    for line in parts[1].splitlines()[1:]:
        line = line.strip()
        if line.startswith("- **"):
            break  # the next split's heading
        if line.startswith("- `") and line.endswith(".vital`"):
            paths.append(folder / line[3:-1])
    return paths


def find_presets(folder: str | Path) -> list[Path]:
    """Every `.vital` file below a folder, sorted for determinism."""
    return sorted(Path(folder).rglob("*.vital"))


def read_vital(path: str | Path, *, registry: Registry | None = None) -> Preset:
    """Read a `.vital` file. Raises `PresetError` with a one-line reason for anything unreadable."""
    path = Path(path)
    if path.is_dir():
        raise PresetError(f"{path}: is a directory, expected a .vital file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PresetError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PresetError(f"{path}: cannot read ({e.__class__.__name__}: {e})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise PresetError(f"{path}: not a Vital preset (invalid JSON at line {e.lineno}: {e.msg})") from None
    except (ValueError, RecursionError) as e:  # an integer over 4300 digits; nesting deeper than the stack
        reason = str(e).split(";")[0].splitlines()[0] if str(e) else type(e).__name__
        raise PresetError(f"{path}: not a Vital preset ({reason})") from None
    preset = Preset.from_vital(doc, registry=registry, source=str(path))
    if not preset.meta.get("preset_name"):
        preset = replace(preset, meta={**preset.meta, "preset_name": path.stem})
    return preset


def write_vital(preset: Preset, path: str | Path, *, registry: Registry | None = None) -> Path:
    """Write a `.vital` file atomically (a crash never leaves half a preset)."""
    from datagen.atomic import write_text

    return write_text(path, preset.to_vital_text(registry))
