"""How to build a preset by hand in Vital: a step-by-step tutorial, written by Claude or by a template.

`describe()` turns a `Preset` into what a person needs to rebuild it from Vital's Init preset: the modules
that make sound (oscillators, sample and filters that are on; the amp envelope; envelopes 2-6, LFOs and
random generators only when they modulate something; effects that are on, in chain order), each with the
values Vital itself displays ("0 semitones", "Sawtooth", "0.25 secs", "1/4"), plus the modulation routes.
A module's settings are its main controls plus every other control that differs from Init, minus controls
that have no effect in the current mode (an LFO's seconds rate while it is tempo-synced, formant controls
of a non-formant filter, unison controls of a single voice, ...).

`tutorial()` asks the Anthropic API to explain those values step by step (`build_prompt()` is the exact user
message), and falls back to `offline_tutorial()`, a deterministic Markdown template, when there is no
`ANTHROPIC_API_KEY` or the call fails for any reason. `Tutorial.notice` says which one was used and why.

Display texts come from a real `vita.Synth` loaded with the preset (`get_control_text`); vita prints numbers
with six decimals ("0.000500 secs"), which `_tidy()` rounds to three significant digits ("0.0005 secs").
Controls that store a MIDI note (every `*_cutoff` / `*_center`) also get their frequency in Hz, since Vital
shows them in semitones.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass

from datagen.preset import N_OSCILLATORS, Preset, PresetError, init_preset
from datagen.registry import Registry, load_registry
from inference.pitch import midi_to_hz

log = logging.getLogger(__name__)

DEFAULT_MODEL = "claude-sonnet-4-5"
MODEL_ENV = "VITAL_MATCH_TUTORIAL_MODEL"
KEY_ENV = "ANTHROPIC_API_KEY"
MAX_TOKENS = 2000

# Vital's `constants::Effect` enum: the indices `effect_chain_order` permutes.
EFFECTS = ("chorus", "compressor", "delay", "distortion", "eq", "filter_fx", "flanger", "phaser", "reverb")

# Main controls per module kind (suffixes after the module prefix), shown even at their Init value, in this
# order. Rate controls of every sync mode are listed; `_relevant` keeps the one the sync mode uses.
_RATE = ("sync", "frequency", "tempo", "keytrack_transpose", "keytrack_tune")
_MAIN = {
    "osc": ("level", "pan", "transpose", "tune", "unison_voices", "unison_detune", "wave_frame", "destination"),
    "sample": ("level", "pan", "transpose", "tune", "keytrack", "loop", "destination"),
    "filter": ("model", "style", "cutoff", "resonance", "drive", "mix", "keytrack"),
    "env": ("delay", "attack", "hold", "decay", "sustain", "release"),
    "lfo": _RATE + ("sync_type",),
    "random": ("style",) + _RATE + ("sync_type",),
    "chorus": ("voices",) + _RATE + ("feedback", "mod_depth", "delay_1", "delay_2", "dry_wet"),
    "compressor": ("enabled_bands", "attack", "release", "mix"),
    "delay": ("style",) + _RATE + ("feedback", "filter_cutoff", "filter_spread", "dry_wet"),
    "distortion": ("type", "drive", "filter_order", "mix"),
    "eq": tuple(f"{band}_{s}" for band in ("low", "band", "high") for s in ("mode", "cutoff", "gain", "resonance")),
    "flanger": _RATE + ("feedback", "mod_depth", "center", "dry_wet"),
    "phaser": _RATE + ("feedback", "mod_depth", "center", "blend", "dry_wet"),
    "reverb": ("size", "decay_time", "delay", "dry_wet"),
    "global": ("polyphony", "volume"),
    "macro": (),
}
_NEVER_SHOWN = {"view_spectrogram", "effect_chain_order"}  # GUI state / shown as the effect order instead
_UNISON_ONLY = ("unison_detune", "unison_blend", "stack_style", "detune_power", "detune_range", "frame_spread",
                "stereo_spread", "spectral_unison")
_DESTINATION_EFFECT = {"CHORUS": "chorus", "COMPRESSOR": "compressor", "DELAY": "delay", "DISTORTION": "distortion",
                       "EQ": "eq", "FX FILTER": "filter_fx", "FLANGER": "flanger", "PHASER": "phaser",
                       "REVERB": "reverb"}
_DISPLAY_PREFIX = re.compile(
    r"^(Oscillator \d|Filter \d|Filter fx|Envelope \d|Random LFO \d|LFO \d|Chorus|Compressor|Delay|Distortion|EQ"
    r"|Flanger|Phaser|Reverb|Sample) "
)
_DECIMAL = re.compile(r"-?\d+\.\d+")
_SECTION_KEYS = ("oscillators", "filters", "envelopes", "lfos", "random", "effects")

SYSTEM_PROMPT = (
    "You are an expert sound designer who teaches the Vital synthesizer. You write clear, practical, "
    "step-by-step tutorials in Markdown. You only use the settings you are given: never invent parameters, "
    "modules, routes or values, and quote values exactly as written (they are Vital's own display text)."
)


@dataclass(frozen=True)
class Tutorial:
    text: str  # Markdown
    source: str  # "anthropic:<model>" or "offline"
    notice: str  # one line: which writer was used and why


# ---- what the sound is ---------------------------------------------------------------------------------


def describe(preset: Preset, *, registry: Registry | None = None, confidence: dict[str, float] | None = None) -> dict:
    """The sound, grouped by active module, in Vital's display text. JSON-able:

    {"name": str,
     "oscillators" | "filters" | "envelopes" | "lfos" | "random" | "effects": [module, ...],
     "modulation": [route, ...], "voice": module}
    module = {"module": "filter_1", "title": "Filter 1", "settings": [setting, ...], ...};
    effects are in chain order with "position" (1-based, among the active effects);
    filters carry "inputs" (titles of the active sources feeding them); modulation sources carry "modulates";
    setting = {"name": control, "label": "Cutoff", "value": "0 semitones"} plus "hz" for MIDI-note controls
    and "confidence" (0-1) where `confidence` has the control's name;
    route = {"source", "destination", "source_label", "destination_label", "amount", "amount_text",
             "bipolar", "stereo", "power", "instruction"}.
    """
    reg = registry or load_registry()
    confidence = confidence or {}
    texts = _control_texts(preset, reg)
    labels = _display_names()
    ctx = _Context(preset, reg, texts, labels, _init_raw(reg), confidence)

    sources = {m.source for m in preset.modulations}
    modulates: dict[str, list[str]] = {}
    for m in preset.modulations:
        modulates.setdefault(m.source, []).append(labels.get(m.destination, m.destination))

    out: dict = {"name": preset.name, **{k: [] for k in _SECTION_KEYS}}
    for i in range(1, N_OSCILLATORS + 1):
        m = f"osc_{i}"
        if _is_on(preset, f"{m}_on"):
            wt = preset.wavetables[i - 1] if i - 1 < len(preset.wavetables) else None
            name = wt.get("name") if isinstance(wt, dict) and wt.get("name") else _template_wavetable_name(i - 1)
            out["oscillators"].append(ctx.module(m, "osc", extra=[_setting(f"{m}_wavetable", "Wavetable", name, ctx)]))
    if _is_on(preset, "sample_on"):
        sample = preset.extras.get("sample")
        name = sample.get("name") if isinstance(sample, dict) and sample.get("name") else _template_sample_name()
        out["oscillators"].append(ctx.module("sample", "sample", extra=[_setting("sample_name", "Sample", name, ctx)]))

    for i in (1, 2):
        m = f"filter_{i}"
        if _is_on(preset, f"{m}_on"):
            entry = ctx.module(m, "filter")
            entry["inputs"] = _filter_inputs(preset, i, texts)
            out["filters"].append(entry)

    for i in range(1, 7):
        m = f"env_{i}"
        if i == 1 or m in sources:
            entry = ctx.module(m, "env")
            if m in modulates:
                entry["modulates"] = modulates[m]
            out["envelopes"].append(entry)
    lfo_shapes = preset.extras.get("lfos")
    for i in range(1, 9):
        m = f"lfo_{i}"
        if m in sources:
            shape = lfo_shapes[i - 1] if isinstance(lfo_shapes, list) and i - 1 < len(lfo_shapes) else None
            name = shape.get("name") if isinstance(shape, dict) and shape.get("name") else _template_lfo_name(i - 1)
            entry = ctx.module(m, "lfo", extra=[_setting(f"{m}_shape", "Shape", name, ctx)])
            entry["modulates"] = modulates[m]
            out["lfos"].append(entry)
    for i in range(1, 5):
        m = f"random_{i}"
        if m in sources:
            entry = ctx.module(m, "random")
            entry["modulates"] = modulates[m]
            out["random"].append(entry)

    order = effect_order(preset.raw("effect_chain_order", reg))
    for effect in (e for e in order if _is_on(preset, f"{e}_on")):
        entry = ctx.module(effect, "filter" if effect == "filter_fx" else effect)
        entry["position"] = len(out["effects"]) + 1
        out["effects"].append(entry)

    out["modulation"] = [_route(m, labels) for m in preset.modulations]

    voice = ctx.module("global", "global")
    macros = ctx.module("macro", "macro", keep=lambda name: name in sources)
    for s in macros["settings"]:
        custom = preset.meta.get(f"macro{s['name'].rsplit('_', 1)[-1]}")
        if custom:
            s["label"] = f"{s['label']} ({custom})"
    voice["settings"] += macros["settings"]
    voice["title"] = "Voice & master"
    out["voice"] = voice
    return out


def effect_order(code: float) -> list[str]:
    """Vital's effect chain, first to last, from `effect_chain_order` (a Lehmer code; port of
    `vital::utils::decodeFloatToOrder`). Code 0 is the default order, `EFFECTS`."""
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


class _Context:
    """Everything `describe` needs per control: texts, labels, Init values, relevance."""

    def __init__(self, preset, reg, texts, labels, init_raw, confidence):
        self.preset, self.reg, self.texts, self.labels = preset, reg, texts, labels
        self.init_raw, self.confidence = init_raw, confidence

    def changed(self, name: str) -> bool:
        p = self.reg.by_name[name]
        return abs(self.preset.raw(name, self.reg) - self.init_raw[name]) > 1e-6 * max(p.span, 1.0)

    def relevant(self, module: str, name: str) -> bool:
        suffix = name[len(module) + 1:] if name.startswith(module + "_") else name
        t = self.texts
        if name in _NEVER_SHOWN or suffix in ("on", "view_2d", "filter_input"):
            return False
        if suffix.endswith(("frequency", "tempo")) or suffix.startswith("keytrack_"):
            # delay_aux_tempo follows delay_aux_sync; lfo_1_tempo and lfo_1_keytrack_tune follow lfo_1_sync
            head = suffix.rsplit("_", 1)[0] if "_" in suffix and not suffix.startswith("keytrack_") else ""
            sync = t.get(f"{module}_{head}_sync" if head else f"{module}_sync")
            if sync is not None:
                if suffix.startswith("keytrack_"):
                    return sync == "Keytrack"
                if suffix.endswith("frequency"):
                    return sync == "Seconds"
                return sync not in ("Seconds", "Keytrack")
        if module.startswith("filter"):
            model = t.get(f"{module}_model")
            if suffix.startswith("formant_"):
                return model == "Formant"
            if suffix == "blend_transpose":
                return model == "Comb"
        if module.startswith("osc_"):
            if suffix.startswith("spectral_morph_") and suffix != "spectral_morph_type":
                return t.get(f"{module}_spectral_morph_type") != "None"
            if suffix.startswith("distortion_") and suffix != "distortion_type":
                return t.get(f"{module}_distortion_type") != "None"
            if suffix in _UNISON_ONLY:
                return self.preset.raw(f"{module}_unison_voices", self.reg) > 1
        if module == "distortion" and suffix.startswith("filter_") and suffix != "filter_order":
            return t.get("distortion_filter_order") != "None"
        return True

    def module(self, module: str, kind: str, *, extra=(), keep=None) -> dict:
        members = next(m for m in self.reg.modules if m.name == module).params
        prefix = "" if module == "global" else f"{module}_"  # global controls have no module prefix
        main = [prefix + s for s in _MAIN[kind] if prefix + s in self.reg.by_name]
        rest = [n for n in members if n not in main and (self.changed(n) or (keep is not None and keep(n)))]
        names = [n for n in main + rest if self.relevant(module, n)]
        settings = list(extra) + [self.setting(n) for n in names]
        return {"module": module, "title": module_title(module), "settings": settings}

    def setting(self, name: str) -> dict:
        label = _DISPLAY_PREFIX.sub("", self.labels.get(name, name)) or name
        s = _setting(name, label, self.texts[name], self)
        if name.endswith(("_cutoff", "_center")):
            s["hz"] = _hz_text(self.preset.raw(name, self.reg))
        return s


def _setting(name: str, label: str, value: str, ctx: _Context) -> dict:
    s = {"name": name, "label": label, "value": value}
    if name in ctx.confidence:
        s["confidence"] = round(float(ctx.confidence[name]), 4)
    return s


def _is_on(preset: Preset, switch: str) -> bool:
    return bool(preset.categorical.get(switch, 0))


def _filter_inputs(preset: Preset, index: int, texts: dict[str, str]) -> list[str]:
    """Titles of the active sources routed into filter `index` (an oscillator's or the sample's destination
    FILTER N or FILTER 1+2; the other filter when this filter's filter input is on)."""
    wanted = (f"FILTER {index}", "FILTER 1+2")
    out = [module_title(f"osc_{i}") for i in range(1, N_OSCILLATORS + 1)
           if _is_on(preset, f"osc_{i}_on") and texts[f"osc_{i}_destination"] in wanted]
    if _is_on(preset, "sample_on") and texts["sample_destination"] in wanted:
        out.append(module_title("sample"))
    if _is_on(preset, f"filter_{index}_filter_input"):
        out.append(module_title(f"filter_{3 - index}"))
    return out


def _route(m, labels: dict[str, str]) -> dict:
    src, dst = source_label(m.source), labels.get(m.destination, m.destination)
    amount_text = f"{round(m.amount * 100, 1):+g}%"
    extras = [x for x, on in (("bipolar", m.bipolar), ("stereo", m.stereo)) if on]
    if m.power:
        extras.append(f"curve power {m.power:+.3g}")
    instruction = f"Drag {src} onto {dst}, amount {amount_text}" + "".join(f", {x}" for x in extras)
    return {"source": m.source, "destination": m.destination, "source_label": src, "destination_label": dst,
            "amount": round(float(m.amount), 6), "amount_text": amount_text, "bipolar": bool(m.bipolar),
            "stereo": bool(m.stereo), "power": round(float(m.power), 6), "instruction": instruction}


def module_title(module: str) -> str:
    """The name a person sees in Vital: "osc_2" -> "Oscillator 2", "env_1" -> "Envelope 1", ..."""
    m = re.match(r"^(osc|filter|env|lfo|random)_(\d)$", module)
    if m:
        kind = {"osc": "Oscillator", "filter": "Filter", "env": "Envelope", "lfo": "LFO", "random": "Random LFO"}
        return f"{kind[m.group(1)]} {m.group(2)}"
    return {"filter_fx": "FX Filter", "eq": "EQ", "global": "Voice & master", "macro": "Macros"}.get(
        module, module.replace("_", " ").title())


def source_label(source: str) -> str:
    """A modulation source as Vital labels it: "env_2" -> "ENV 2", "macro_control_1" -> "MACRO 1"."""
    m = re.match(r"^(env|lfo|random|macro_control)_(\d)$", source)
    if m:
        return f"{'MACRO' if m.group(1) == 'macro_control' else m.group(1).upper()} {m.group(2)}"
    return source.replace("_", " ").upper()


# ---- Vital's display text ---------------------------------------------------------------------------------


def _control_texts(preset: Preset, reg: Registry) -> dict[str, str]:
    """{control: tidied display text} for every registry control, from a Synth loaded with the preset.
    The Synth (and so every control handle) lives only inside this function."""
    import vita

    synth = vita.Synth()
    if not synth.load_json(preset.to_vital_text(reg)):
        raise PresetError("Vital refused the preset (malformed, or saved by a newer Vital)")
    texts = {p.name: _tidy(synth.get_control_text(p.name)) for p in reg.params}
    del synth
    return texts


_DISPLAY_NAMES: dict[str, str] = {}


def _display_names() -> dict[str, str]:
    """{control: Vital's display name} ("filter_1_cutoff" -> "Filter 1 Cutoff"), modulation slots included."""
    if not _DISPLAY_NAMES:
        import vita

        synth = vita.Synth()
        names = {n: str(synth.get_control_details(n).display_name) for n in synth.get_controls()}
        del synth
        _DISPLAY_NAMES.update(names)
    return _DISPLAY_NAMES


def _tidy(text: str) -> str:
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


def _hz_text(midi_note: float) -> str:
    """A MIDI note (Vital stores every cutoff/center as one) as a frequency: "262 Hz", "1.05 kHz"."""
    hz = midi_to_hz(midi_note)
    if hz < 100:
        return f"{hz:.1f} Hz"
    if hz < 1000:
        return f"{hz:.0f} Hz"
    return f"{hz / 1000:.2f} kHz" if hz < 10000 else f"{hz / 1000:.1f} kHz"


_INIT_RAW: dict[str, dict[str, float]] = {}


def _init_raw(reg: Registry) -> dict[str, float]:
    key = reg.fingerprint
    if key not in _INIT_RAW:
        init = init_preset(reg)
        _INIT_RAW[key] = {p.name: init.raw(p.name, reg) for p in reg.params}
    return _INIT_RAW[key]


def _template_wavetable_name(index: int) -> str:
    from datagen.preset import _template_doc

    tables = _template_doc()["settings"].get("wavetables") or []
    return str(tables[index].get("name", "Init")) if index < len(tables) else "Init"


def _template_lfo_name(index: int) -> str:
    from datagen.preset import _template_doc

    shapes = _template_doc()["settings"].get("lfos") or []
    return str(shapes[index].get("name", "Triangle")) if index < len(shapes) else "Triangle"


def _template_sample_name() -> str:
    from datagen.preset import _template_doc

    return str((_template_doc()["settings"].get("sample") or {}).get("name", "White Noise"))


# ---- the offline template -----------------------------------------------------------------------------------


def offline_tutorial(preset: Preset, *, registry: Registry | None = None, note: str | None = None,
                     confidence: dict[str, float] | None = None) -> str:
    """A deterministic Markdown walkthrough: Init preset, then one section per active module."""
    return _offline_from(describe(preset, registry=registry, confidence=confidence), note)


def _value_md(s: dict) -> str:
    out = f"**{s['value']}**"
    if "hz" in s:
        out += f" (≈ {s['hz']})"
    if "confidence" in s:
        out += f" (confidence {s['confidence'] * 100:.0f}%)"
    return out


def _settings_md(settings: list[dict]) -> list[str]:
    return [f"- {s['label']}: {_value_md(s)}" for s in settings]


def _offline_from(d: dict, note: str | None) -> str:
    title = f"# Building “{d['name']}” in Vital" if d["name"] else "# Building this sound in Vital"
    lines = [title, ""]
    if note:
        lines += [f"> {note}", ""]
    lines += ["Values are quoted as Vital displays them; type them in by double-clicking a knob, or drag until "
              "the knob's popup shows the value.", ""]
    step = 0

    def section(heading: str) -> None:
        nonlocal step
        step += 1
        lines.extend([f"## {step}. {heading}", ""])

    section("Start from the Init preset")
    lines += ["Open the preset menu and choose **Initialize Preset**. Init has Oscillator 1 on (the Init "
              "wavetable, a saw), Envelope 1 on its amplitude, and every filter and effect off. Anything not "
              "mentioned below stays as Init leaves it.", ""]

    if d["oscillators"]:
        section("Sound sources")
        for osc in d["oscillators"]:
            lines += [f"### {osc['title']}", ""]
            if osc["module"] != "osc_1":
                lines.append(f"- Turn **{osc['title']}** on (click the switch beside its name).")
            lines += _settings_md(osc["settings"]) + [""]

    if d["filters"]:
        section("Filters")
        for f in d["filters"]:
            lines += [f"### {f['title']}", "", f"- Turn **{f['title']}** on."]
            fed = ", ".join(f["inputs"]) if f["inputs"] else "nothing (no active source is routed here)"
            lines.append(f"- Input: {fed} (the source buttons on the filter's left edge).")
            lines += _settings_md(f["settings"]) + [""]

    if d["envelopes"]:
        section("Envelopes")
        for e in d["envelopes"]:
            role = " (amplitude: shapes every note's volume)" if e["module"] == "env_1" else ""
            lines += [f"### {e['title']}{role}", ""]
            if e.get("modulates"):
                lines.append(f"- Modulates: {', '.join(e['modulates'])} (routes in the Modulation step).")
            lines += _settings_md(e["settings"]) + [""]

    for key, heading in (("lfos", "LFOs"), ("random", "Random generators")):
        if d[key]:
            section(heading)
            for m in d[key]:
                lines += [f"### {m['title']}", "", f"- Modulates: {', '.join(m['modulates'])}."]
                lines += _settings_md(m["settings"]) + [""]

    if d["effects"]:
        section("Effects")
        chain = " → ".join(e["title"] for e in d["effects"])
        lines += [f"Open the **Effects** tab, switch on {', '.join(e['title'] for e in d['effects'])}, and drag "
                  f"them into this order (top to bottom): {chain}.", ""]
        for e in d["effects"]:
            lines += [f"### {e['position']}. {e['title']}", ""] + _settings_md(e["settings"]) + [""]

    if d["modulation"]:
        section("Modulation")
        lines += ["Drag each source's handle onto the destination knob, then set the amount on the ring that "
                  "appears (or in the Matrix tab):", ""]
        lines += [f"{i}. {r['instruction']}." for i, r in enumerate(d["modulation"], start=1)] + [""]

    section(d["voice"]["title"])
    lines += _settings_md(d["voice"]["settings"]) + [""]
    return "\n".join(lines).rstrip() + "\n"


# ---- the API path -------------------------------------------------------------------------------------------


_INSTRUCTIONS = """\
Write a step-by-step tutorial in Markdown that explains how to build this sound in Vital, starting from \
the Init preset (Initialize Preset: Oscillator 1 on with the Init saw wavetable, Envelope 1 on amplitude, \
filters and effects off).
- Ground every step only in the settings listed above: do not invent modules, controls, routes or values, \
and quote values exactly as written (they are Vital's own display text).
- Cover every module listed, in this order: sound sources, filters, envelopes, LFOs, random generators, \
effects (switch them on and put them in the listed chain order), modulation routes (one step per route, \
with its amount), voice & master settings. Modules that are not listed are off: tell the user to leave them off.
- For each step, say in one sentence what it contributes to the sound.
- Where a value has a confidence below 50%, say the choice is uncertain and suggest trying the alternatives \
by ear.
"""


def _describe_text(d: dict) -> str:
    def settings(ss: list[dict]) -> str:
        parts = []
        for s in ss:
            part = f"{s['label']} = {s['value']}"
            if "hz" in s:
                part += f" (≈ {s['hz']})"
            if "confidence" in s:
                part += f" [confidence {s['confidence'] * 100:.0f}%]"
            parts.append(part)
        return "; ".join(parts)

    lines = [f"Preset name: {d['name'] or '(unnamed)'}"]
    for key, heading in (("oscillators", "Sound sources"), ("filters", "Filters"), ("envelopes", "Envelopes"),
                         ("lfos", "LFOs"), ("random", "Random generators"),
                         ("effects", "Effects (active ones, in chain order)")):
        lines.append(f"{heading}:" if d[key] else f"{heading}: none")
        for m in d[key]:
            head = f"{m['position']}. {m['title']}" if "position" in m else m["title"]
            info = []
            if "inputs" in m:
                info.append(f"input from {', '.join(m['inputs']) or 'nothing'}")
            if "modulates" in m:
                info.append(f"modulates {', '.join(m['modulates'])}")
            extra = f" ({'; '.join(info)})" if info else ""
            lines.append(f"- {head}{extra}: {settings(m['settings'])}")
    lines.append("Modulation routes:" if d["modulation"] else "Modulation routes: none")
    lines += [f"- {r['instruction']}" for r in d["modulation"]]
    lines.append(f"{d['voice']['title']}: {settings(d['voice']['settings'])}")
    return "\n".join(lines)


def _prompt_from(d: dict, note: str | None) -> str:
    parts = ["Here are the exact settings of a Vital synthesizer preset, grouped by the modules that are active.",
             "", _describe_text(d), ""]
    if note:
        parts += [f"Context: {note}", ""]
    parts.append(_INSTRUCTIONS)
    return "\n".join(parts)


def build_prompt(preset: Preset, *, registry: Registry | None = None, note: str | None = None,
                 confidence: dict[str, float] | None = None) -> str:
    """The user message `tutorial()` sends: the described settings as text, then the instructions."""
    return _prompt_from(describe(preset, registry=registry, confidence=confidence), note)


def tutorial(preset: Preset, *, registry: Registry | None = None, note: str | None = None,
             confidence: dict[str, float] | None = None, model: str | None = None, api_key: str | None = None,
             client=None) -> Tutorial:
    """A tutorial from Claude when an API key (or a `client`) is available, else the offline template.
    Never raises for API trouble: any exception falls back to the template, named in `notice`."""
    d = describe(preset, registry=registry, confidence=confidence)
    model = model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    key = api_key if api_key is not None else os.environ.get(KEY_ENV)

    def offline(reason: str) -> Tutorial:
        return Tutorial(text=_offline_from(d, note), source="offline", notice=f"offline template ({reason})")

    if client is None and not key:
        return offline(f"no {KEY_ENV} set")
    try:
        if client is None:
            try:
                import anthropic
            except ImportError:
                return offline("anthropic package not installed: pip install 'vital-match[inference]'")
            client = anthropic.Anthropic(api_key=key)
        response = client.messages.create(
            model=model, max_tokens=MAX_TOKENS, system=SYSTEM_PROMPT,
            messages=[{"role": "user", "content": _prompt_from(d, note)}],
        )
        text = "".join(getattr(b, "text", "") for b in response.content if getattr(b, "type", None) == "text")
    except Exception as e:  # network, auth, rate limit, missing package: the template still works
        reason = _short_error(e)
        log.warning("tutorial: Anthropic API call failed, using the offline template: %s", reason)
        return offline(f"API error: {reason}")
    if not text.strip():
        return offline("API returned no text")
    return Tutorial(text=text, source=f"anthropic:{model}", notice=f"written by {model} via the Anthropic API")


def _short_error(e: BaseException, limit: int = 160) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    reason = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."
