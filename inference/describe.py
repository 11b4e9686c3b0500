"""What a person needs to rebuild a preset from Vital's Init preset, as frozen dataclasses built once.

`describe(preset)` -> `PresetView`: the modules that make sound (oscillators, sample and filters that are on;
the amp envelope; envelopes 2-6, LFOs and random generators only when they modulate something; effects that
are on, in chain order), each a `ModuleView` of `Setting`s in the values Vital itself displays ("0 semitones",
"Sawtooth", "0.25 secs", "1/4"), plus the modulation `Route`s. A module's settings are its main controls plus
every other control that differs from Init, minus controls that have no effect in the current mode (an LFO's
seconds rate while it is tempo-synced, formant controls of a non-formant filter, unison controls of a single
voice, ...). Controls that store a MIDI note (every `*_cutoff` / `*_center`) also get their frequency in Hz,
since Vital shows them in semitones.

Every renderer reads a `PresetView`: the tutorial's Markdown template and LLM prompt (`inference.tutorial`),
the demo's preset cards and route table (`inference.demo`). Vital's own words (display texts, names, the
effect chain) come from `datagen.display`: only datagen talks to vita.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace

from datagen import display
from datagen.preset import Modulation, Preset
from datagen.registry import ENVELOPES, LFOS, N_OSCILLATORS, RANDOMS, Registry, load_registry
from inference.pitch import midi_to_hz

# Main controls per module kind (suffixes after the module prefix), shown even at their Init value, in this
# order. Rate controls of every sync mode are listed; `_Context.relevant` keeps the one the sync mode uses.
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


@dataclass(frozen=True)
class Setting:
    name: str  # the control ("filter_1_cutoff"), or osc_N_wavetable / lfo_N_shape / sample_name for a table
    label: str  # as the module's panel shows it: "Cutoff"
    value: str  # Vital's display text, tidied: "24 semitones"
    hz: str | None = None  # MIDI-note controls (*_cutoff, *_center): the frequency, "1.05 kHz"
    confidence: float | None = None  # 0-1, where the caller's confidence names the control

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ModuleView:
    module: str  # "filter_1"
    title: str  # "Filter 1"
    settings: tuple[Setting, ...]
    inputs: tuple[str, ...] | None = None  # filters only: titles of the active sources feeding them (may be ())
    modulates: tuple[str, ...] = ()  # modulation sources: display names of their destinations, route order
    position: int | None = None  # effects only: 1-based place among the active effects, in chain order

    def to_dict(self) -> dict:
        out = {"module": self.module, "title": self.title, "settings": [s.to_dict() for s in self.settings]}
        if self.inputs is not None:
            out["inputs"] = list(self.inputs)
        if self.modulates:
            out["modulates"] = list(self.modulates)
        if self.position is not None:
            out["position"] = self.position
        return out


@dataclass(frozen=True)
class Route:
    source: str  # "env_2"
    destination: str  # "filter_1_cutoff"
    source_label: str  # "ENV 2"
    destination_label: str  # "Filter 1 Cutoff"
    amount: float  # [-1, 1]
    amount_text: str  # "+50%"
    bipolar: bool
    stereo: bool
    power: float  # curve shape, [-10, 10]
    instruction: str  # "Drag ENV 2 onto Filter 1 Cutoff, amount +50%"


@dataclass(frozen=True)
class PresetView:
    name: str
    oscillators: tuple[ModuleView, ...]  # oscillators that are on, then the sample if on
    filters: tuple[ModuleView, ...]
    envelopes: tuple[ModuleView, ...]  # env_1 always, the others when they modulate something
    lfos: tuple[ModuleView, ...]  # only those that modulate something
    random: tuple[ModuleView, ...]  # only those that modulate something
    effects: tuple[ModuleView, ...]  # active ones, in chain order
    modulation: tuple[Route, ...]  # the preset's order
    voice: ModuleView  # "Voice & master": global controls, then the macros used as sources

    @property
    def sections(self) -> tuple[tuple[str, tuple[ModuleView, ...]], ...]:
        """(key, modules) for the module groups in the order a tutorial builds them; renderers name them."""
        return (("oscillators", self.oscillators), ("filters", self.filters), ("envelopes", self.envelopes),
                ("lfos", self.lfos), ("random", self.random), ("effects", self.effects))

    def with_confidence(self, confidence: Mapping[str, float] | None) -> PresetView:
        """The same view with the confidences of `confidence` instead (no Vital work), as if described with it."""
        conf = confidence or {}

        def module(m: ModuleView) -> ModuleView:
            return replace(m, settings=tuple(replace(s, confidence=_confidence(conf, s.name)) for s in m.settings))

        return replace(self, **{key: tuple(map(module, ms)) for key, ms in self.sections}, voice=module(self.voice))

    def to_dict(self) -> dict:
        """JSON-able: tuples as lists, fields that do not apply (None, no modulates) left out."""
        return {"name": self.name, **{key: [m.to_dict() for m in ms] for key, ms in self.sections},
                "modulation": [asdict(r) for r in self.modulation], "voice": self.voice.to_dict()}


def describe(preset: Preset, *, registry: Registry | None = None,
             confidence: Mapping[str, float] | None = None) -> PresetView:
    """The sound, grouped by active module, in Vital's display text. `confidence` ({control: 0-1}, wavetables
    as osc_N_wavetable) is attached to the settings it names. Loads the preset into one vita Synth."""
    reg = registry or load_registry()
    ctx = _Context(preset=preset, reg=reg, texts=display.control_texts(preset, reg), confidence=confidence or {})

    sources = {m.source for m in preset.modulations}
    modulates: dict[str, list[str]] = {}
    for m in preset.modulations:
        modulates.setdefault(m.source, []).append(display.display_name(m.destination))

    def source(module: str, kind: str, *, extra: Iterable[Setting] = ()) -> ModuleView:
        return replace(ctx.module(module, kind, extra=extra), modulates=tuple(modulates.get(module, ())))

    oscillators = [ctx.module(f"osc_{i}", "osc", extra=[ctx.setting_as(f"osc_{i}_wavetable", "Wavetable",
                                                                         display.wavetable_name(preset, i - 1))])
                   for i in range(1, N_OSCILLATORS + 1) if _is_on(preset, f"osc_{i}_on")]
    if _is_on(preset, "sample_on"):
        name = display.sample_name(preset)
        oscillators.append(ctx.module("sample", "sample", extra=[ctx.setting_as("sample_name", "Sample", name)]))
    filters = [replace(ctx.module(f"filter_{i}", "filter"), inputs=_filter_inputs(preset, i, ctx.texts))
               for i in (1, 2) if _is_on(preset, f"filter_{i}_on")]
    envelopes = [source(m, "env") for m in ENVELOPES if m == "env_1" or m in sources]
    lfos = [source(m, "lfo", extra=[ctx.setting_as(f"{m}_shape", "Shape", display.lfo_shape_name(preset, i))])
            for i, m in enumerate(LFOS) if m in sources]
    randoms = [source(m, "random") for m in RANDOMS if m in sources]

    order = display.effect_order(preset.raw("effect_chain_order", reg))
    active = [e for e in order if _is_on(preset, f"{e}_on")]
    effects = [replace(ctx.module(e, "filter" if e == "filter_fx" else e), position=n)
               for n, e in enumerate(active, start=1)]

    voice = ctx.module("global", "global")
    macros = ctx.module("macro", "macro", keep=lambda name: name in sources)
    named = []
    for s in macros.settings:  # a macro the preset names shows its name: "Macro 2 (Brightness)"
        custom = preset.meta.get(f"macro{s.name.rsplit('_', 1)[-1]}")
        named.append(replace(s, label=f"{s.label} ({custom})") if custom else s)
    voice = replace(voice, settings=voice.settings + tuple(named))  # titled "Voice & master"

    return PresetView(name=preset.name, oscillators=tuple(oscillators), filters=tuple(filters),
                      envelopes=tuple(envelopes), lfos=tuple(lfos), random=tuple(randoms), effects=tuple(effects),
                      modulation=tuple(_route(m) for m in preset.modulations), voice=voice)


class _Context:
    """Everything `describe` needs per control: display texts, Init values, relevance, confidences."""

    def __init__(self, *, preset: Preset, reg: Registry, texts: dict[str, str], confidence: Mapping[str, float]):
        self.preset, self.reg, self.texts, self.confidence = preset, reg, texts, confidence
        self.init_raw = display.init_raw(reg)

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

    def module(self, module: str, kind: str, *, extra: Iterable[Setting] = (),
               keep: Callable[[str], bool] | None = None) -> ModuleView:
        members = next(m for m in self.reg.modules if m.name == module).params
        prefix = "" if module == "global" else f"{module}_"  # global controls have no module prefix
        main = [prefix + s for s in _MAIN[kind] if prefix + s in self.reg.by_name]
        rest = [n for n in members if n not in main and (self.changed(n) or (keep is not None and keep(n)))]
        names = [n for n in main + rest if self.relevant(module, n)]
        return ModuleView(module=module, title=display.module_title(module),
                          settings=tuple(extra) + tuple(self.setting(n) for n in names))

    def setting(self, name: str) -> Setting:
        hz = _hz_text(self.preset.raw(name, self.reg)) if name.endswith(("_cutoff", "_center")) else None
        return replace(self.setting_as(name, display.control_label(name), self.texts[name]), hz=hz)

    def setting_as(self, name: str, label: str, value: str) -> Setting:
        return Setting(name=name, label=label, value=value, confidence=_confidence(self.confidence, name))


def _confidence(confidence: Mapping[str, float], name: str) -> float | None:
    return round(float(confidence[name]), 4) if name in confidence else None


def _is_on(preset: Preset, switch: str) -> bool:
    return bool(preset.categorical.get(switch, 0))


def _filter_inputs(preset: Preset, index: int, texts: dict[str, str]) -> tuple[str, ...]:
    """Titles of the active sources routed into filter `index` (an oscillator's or the sample's destination
    FILTER N or FILTER 1+2; the other filter when this filter's filter input is on)."""
    wanted = (f"FILTER {index}", "FILTER 1+2")
    out = [display.module_title(f"osc_{i}") for i in range(1, N_OSCILLATORS + 1)
           if _is_on(preset, f"osc_{i}_on") and texts[f"osc_{i}_destination"] in wanted]
    if _is_on(preset, "sample_on") and texts["sample_destination"] in wanted:
        out.append(display.module_title("sample"))
    if _is_on(preset, f"filter_{index}_filter_input"):
        out.append(display.module_title(f"filter_{3 - index}"))
    return tuple(out)


def _route(m: Modulation) -> Route:
    src, dst = display.source_label(m.source), display.display_name(m.destination)
    amount_text = f"{round(m.amount * 100, 1):+g}%"
    extras = [x for x, on in (("bipolar", m.bipolar), ("stereo", m.stereo)) if on]
    if m.power:
        extras.append(f"curve power {m.power:+.3g}")
    instruction = f"Drag {src} onto {dst}, amount {amount_text}" + "".join(f", {x}" for x in extras)
    return Route(source=m.source, destination=m.destination, source_label=src, destination_label=dst,
                 amount=round(float(m.amount), 6), amount_text=amount_text, bipolar=bool(m.bipolar),
                 stereo=bool(m.stereo), power=round(float(m.power), 6), instruction=instruction)


def _hz_text(midi_note: float) -> str:
    """A MIDI note (Vital stores every cutoff/center as one) as a frequency: "262 Hz", "1.05 kHz"."""
    hz = midi_to_hz(midi_note)
    if hz < 100:
        return f"{hz:.1f} Hz"
    if hz < 1000:
        return f"{hz:.0f} Hz"
    return f"{hz / 1000:.2f} kHz" if hz < 10000 else f"{hz / 1000:.1f} kHz"
