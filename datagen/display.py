"""How Vital shows a preset to a person: its display texts, control and module names, and the effect chain.

Everything a description of a preset (`inference.describe`) needs from Vital itself lives here, because only
datagen talks to `vita`:
- `control_texts(preset)`: the text Vital displays for every control ("0 semitones", "Sawtooth", "1/4"), read
  from a real `vita.Synth` loaded with the preset (`get_control_text`). vita prints numbers with six decimals
  ("0.000500 secs"); `tidy()` rounds them to three significant digits ("0.0005 secs").
- `display_name(control)` / `control_label(control)`: Vital's name for a control ("Filter 1 Cutoff") and the
  same without its module ("Cutoff"), modulation destinations included.
- `module_title(module)` / `source_label(source)`: the names Vital's UI gives modules and modulation sources.
- `effect_order(code)`: the effect chain `effect_chain_order` encodes.
- `wavetable_name` / `lfo_shape_name` / `sample_name`: the names a preset's tables carry, else the Init
  preset's; `init_raw(registry)`: the Init preset's raw values (what "changed" is measured from).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from types import MappingProxyType

from datagen.preset import Preset, PresetError, init_preset, template_doc
from datagen.registry import EFFECTS, Registry

# A display name starts with its module's ("Filter 1 Cutoff"); inside a module's card only "Cutoff" is needed.
_DISPLAY_PREFIX = re.compile(
    r"^(Oscillator \d|Filter \d|Filter fx|Envelope \d|Random LFO \d|LFO \d|Chorus|Compressor|Delay|Distortion|EQ"
    r"|Flanger|Phaser|Reverb|Sample) "
)
_DECIMAL = re.compile(r"-?\d+\.\d+")
_NUMBERED_TITLES = {"osc": "Oscillator", "filter": "Filter", "env": "Envelope", "lfo": "LFO", "random": "Random LFO"}
_NAMED_TITLES = {"filter_fx": "FX Filter", "eq": "EQ", "global": "Voice & master", "macro": "Macros"}


# ---- names ------------------------------------------------------------------------------------------------


def module_title(module: str) -> str:
    """The name a person sees in Vital: "osc_2" -> "Oscillator 2", "env_1" -> "Envelope 1", ..."""
    m = re.match(r"^(osc|filter|env|lfo|random)_(\d)$", module)
    if m:
        return f"{_NUMBERED_TITLES[m.group(1)]} {m.group(2)}"
    return _NAMED_TITLES.get(module, module.replace("_", " ").title())


def source_label(source: str) -> str:
    """A modulation source as Vital labels it: "env_2" -> "ENV 2", "macro_control_1" -> "MACRO 1"."""
    m = re.match(r"^(env|lfo|random|macro_control)_(\d)$", source)
    if m:
        return f"{'MACRO' if m.group(1) == 'macro_control' else m.group(1).upper()} {m.group(2)}"
    return source.replace("_", " ").upper()


def display_name(control: str) -> str:
    """Vital's display name of a control or modulation destination ("filter_1_cutoff" -> "Filter 1 Cutoff");
    the name itself where vita has none."""
    return _display_names().get(control, control)


def control_label(control: str) -> str:
    """The display name without its module ("filter_1_cutoff" -> "Cutoff"), as a module's own panel shows it."""
    return _DISPLAY_PREFIX.sub("", display_name(control)) or control


@functools.lru_cache(maxsize=1)
def _display_names() -> Mapping[str, str]:
    # One Synth per process: the names never change, and a Synth costs ~0.1 s to build.
    import vita

    synth = vita.Synth()
    names = {n: str(synth.get_control_details(n).display_name) for n in synth.get_controls()}
    del synth  # control handles must not outlive their Synth; none escape this function
    return MappingProxyType(names)


# ---- values -----------------------------------------------------------------------------------------------


def control_texts(preset: Preset, registry: Registry) -> dict[str, str]:
    """{control: tidied display text} for every registry control, from a Synth loaded with the preset.
    The Synth (and so every control handle) lives only inside this function."""
    import vita

    synth = vita.Synth()
    if not synth.load_json(preset.to_vital_text(registry)):
        raise PresetError("Vital refused the preset (malformed, or saved by a newer Vital)")
    texts = {p.name: tidy(synth.get_control_text(p.name)) for p in registry.params}
    del synth
    return texts


def tidy(text: str) -> str:
    """vita prints six decimals ("0.089919 secs", "-6.019997dB"): keep three significant digits."""
    def short(m: re.Match) -> str:
        x = float(m.group(0))
        if x == 0:
            return "0"
        digits = max(0, 2 - math.floor(math.log10(abs(x))))
        s = f"{x:.{digits}f}"
        s = s.rstrip("0").rstrip(".") if "." in s else s
        return "0" if s in ("-0", "") else s

    return _DECIMAL.sub(short, text)


def effect_order(code: float) -> list[str]:
    """Vital's effect chain, first to last, from `effect_chain_order` (a Lehmer code; port of
    `vital::utils::decodeFloatToOrder`). Code 0 is the default order, `EFFECTS` (Vital's `constants::Effect`
    enum, the indices the code permutes)."""
    n = len(EFFECTS)
    order = list(range(n))
    code = max(int(round(code)), 0)
    for i in range(n):
        remaining = n - i
        index = remaining - 1
        inversions = code % remaining
        code //= remaining
        order.insert(index, order.pop(index - inversions))
    return [EFFECTS[k] for k in order]


_INIT_RAW: dict[str, Mapping[str, float]] = {}  # registry fingerprint -> Init's raw values


def init_raw(registry: Registry) -> Mapping[str, float]:
    """{control: raw value in the Init preset} for every registry control, cached per registry."""
    key = registry.fingerprint
    if key not in _INIT_RAW:
        init = init_preset(registry)
        _INIT_RAW[key] = MappingProxyType({p.name: init.raw(p.name, registry) for p in registry.params})
    return _INIT_RAW[key]


# ---- the names tables carry --------------------------------------------------------------------------------
# A preset stores each oscillator's wavetable, each LFO's shape and the sample as JSON objects with a "name";
# a Preset holding None (or a nameless one) plays the Init preset's, so that is the name to show.


def wavetable_name(preset: Preset, index: int) -> str:
    """The wavetable name of oscillator `index + 1`."""
    return _named(preset.wavetables, index) or _init_name("wavetables", index, "Init")


def lfo_shape_name(preset: Preset, index: int) -> str:
    """The shape name of LFO `index + 1`."""
    return _named(preset.extras.get("lfos"), index) or _init_name("lfos", index, "Triangle")


def sample_name(preset: Preset) -> str:
    sample = preset.extras.get("sample")
    if isinstance(sample, dict) and sample.get("name"):
        return sample["name"]
    return str((template_doc()["settings"].get("sample") or {}).get("name", "White Noise"))


def _named(tables, index: int) -> str | None:
    table = tables[index] if isinstance(tables, (list, tuple)) and index < len(tables) else None
    return table.get("name") if isinstance(table, dict) and table.get("name") else None


def _init_name(key: str, index: int, default: str) -> str:
    tables = template_doc()["settings"].get(key) or []
    return str(tables[index].get("name", default)) if index < len(tables) else default
