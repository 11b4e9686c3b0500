"""How to build a preset by hand in Vital: a step-by-step tutorial, written by Claude or by a template.

`tutorial()` asks the Anthropic API to explain a preset's settings step by step (`build_prompt()` is the exact
user message), and falls back to `offline_tutorial()`, a deterministic Markdown template, when there is no
`ANTHROPIC_API_KEY` or the call fails for any reason. `Tutorial.notice` says which one was used and why.

What is explained is `inference.describe.describe()`'s `PresetView` (the active modules in Vital's own display
text, and the modulation routes). Each function takes a `Preset` (described here) or a `PresetView` a caller
already built, so a caller that also shows the view (the demo) describes the preset once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from datagen.preset import Preset
from datagen.registry import Registry
from inference.describe import PresetView, Setting, describe

log = logging.getLogger(__name__)

DEFAULT_MODEL = "claude-sonnet-4-5"
MODEL_ENV = "VITAL_MATCH_TUTORIAL_MODEL"
KEY_ENV = "ANTHROPIC_API_KEY"
MAX_TOKENS = 2000

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


# ---- the offline template -----------------------------------------------------------------------------------


def offline_tutorial(sound: Preset | PresetView, *, registry: Registry | None = None, note: str | None = None,
                     confidence: Mapping[str, float] | None = None) -> str:
    """A deterministic Markdown walkthrough: Init preset, then one section per active module."""
    return _offline_from(_view(sound, registry=registry, confidence=confidence), note)


def _view(sound: Preset | PresetView, *, registry: Registry | None, confidence: Mapping[str, float] | None
          ) -> PresetView:
    """The description of `sound`: itself when the caller already built it (with its own confidences)."""
    if not isinstance(sound, PresetView):
        return describe(sound, registry=registry, confidence=confidence)
    if confidence is not None:
        raise ValueError("confidence belongs to describe() (or PresetView.with_confidence), not to a built view")
    return sound


def _value_md(s: Setting) -> str:
    out = f"**{s.value}**"
    if s.hz is not None:
        out += f" (≈ {s.hz})"
    if s.confidence is not None:
        out += f" (confidence {s.confidence * 100:.0f}%)"
    return out


def _settings_md(settings: tuple[Setting, ...]) -> list[str]:
    return [f"- {s.label}: {_value_md(s)}" for s in settings]


def _offline_from(d: PresetView, note: str | None) -> str:
    title = f"# Building “{d.name}” in Vital" if d.name else "# Building this sound in Vital"
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

    if d.oscillators:
        section("Sound sources")
        for osc in d.oscillators:
            lines += [f"### {osc.title}", ""]
            if osc.module != "osc_1":
                lines.append(f"- Turn **{osc.title}** on (click the switch beside its name).")
            lines += _settings_md(osc.settings) + [""]

    if d.filters:
        section("Filters")
        for f in d.filters:
            lines += [f"### {f.title}", "", f"- Turn **{f.title}** on."]
            fed = ", ".join(f.inputs) if f.inputs else "nothing (no active source is routed here)"
            lines.append(f"- Input: {fed} (the source buttons on the filter's left edge).")
            lines += _settings_md(f.settings) + [""]

    if d.envelopes:
        section("Envelopes")
        for e in d.envelopes:
            role = " (amplitude: shapes every note's volume)" if e.module == "env_1" else ""
            lines += [f"### {e.title}{role}", ""]
            if e.modulates:
                lines.append(f"- Modulates: {', '.join(e.modulates)} (routes in the Modulation step).")
            lines += _settings_md(e.settings) + [""]

    for modules, heading in ((d.lfos, "LFOs"), (d.random, "Random generators")):
        if modules:
            section(heading)
            for m in modules:
                lines += [f"### {m.title}", "", f"- Modulates: {', '.join(m.modulates)}."]
                lines += _settings_md(m.settings) + [""]

    if d.effects:
        section("Effects")
        chain = " → ".join(e.title for e in d.effects)
        lines += [f"Open the **Effects** tab, switch on {', '.join(e.title for e in d.effects)}, and drag "
                  f"them into this order (top to bottom): {chain}.", ""]
        for e in d.effects:
            lines += [f"### {e.position}. {e.title}", ""] + _settings_md(e.settings) + [""]

    if d.modulation:
        section("Modulation")
        lines += ["Drag each source's handle onto the destination knob, then set the amount on the ring that "
                  "appears (or in the Matrix tab):", ""]
        lines += [f"{i}. {r.instruction}." for i, r in enumerate(d.modulation, start=1)] + [""]

    section(d.voice.title)
    lines += _settings_md(d.voice.settings) + [""]
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


_PROMPT_HEADINGS = {"oscillators": "Sound sources", "filters": "Filters", "envelopes": "Envelopes", "lfos": "LFOs",
                    "random": "Random generators", "effects": "Effects (active ones, in chain order)"}


def _describe_text(d: PresetView) -> str:
    """The view as plain text for the prompt: one line per module, its settings joined by "; "."""
    def settings(ss: tuple[Setting, ...]) -> str:
        parts = []
        for s in ss:
            part = f"{s.label} = {s.value}"
            if s.hz is not None:
                part += f" (≈ {s.hz})"
            if s.confidence is not None:
                part += f" [confidence {s.confidence * 100:.0f}%]"
            parts.append(part)
        return "; ".join(parts)

    lines = [f"Preset name: {d.name or '(unnamed)'}"]
    for key, modules in d.sections:
        heading = _PROMPT_HEADINGS[key]
        lines.append(f"{heading}:" if modules else f"{heading}: none")
        for m in modules:
            head = f"{m.position}. {m.title}" if m.position is not None else m.title
            info = []
            if m.inputs is not None:
                info.append(f"input from {', '.join(m.inputs) or 'nothing'}")
            if m.modulates:
                info.append(f"modulates {', '.join(m.modulates)}")
            extra = f" ({'; '.join(info)})" if info else ""
            lines.append(f"- {head}{extra}: {settings(m.settings)}")
    lines.append("Modulation routes:" if d.modulation else "Modulation routes: none")
    lines += [f"- {r.instruction}" for r in d.modulation]
    lines.append(f"{d.voice.title}: {settings(d.voice.settings)}")
    return "\n".join(lines)


def _prompt_from(d: PresetView, note: str | None) -> str:
    parts = ["Here are the exact settings of a Vital synthesizer preset, grouped by the modules that are active.",
             "", _describe_text(d), ""]
    if note:
        parts += [f"Context: {note}", ""]
    parts.append(_INSTRUCTIONS)
    return "\n".join(parts)


def build_prompt(sound: Preset | PresetView, *, registry: Registry | None = None, note: str | None = None,
                 confidence: Mapping[str, float] | None = None) -> str:
    """The user message `tutorial()` sends: the described settings as text, then the instructions."""
    return _prompt_from(_view(sound, registry=registry, confidence=confidence), note)


def tutorial(sound: Preset | PresetView, *, registry: Registry | None = None, note: str | None = None,
             confidence: Mapping[str, float] | None = None, model: str | None = None, api_key: str | None = None,
             client=None) -> Tutorial:
    """A tutorial from Claude when an API key (or a `client`) is available, else the offline template.
    Never raises for API trouble: any exception falls back to the template, named in `notice`."""
    d = _view(sound, registry=registry, confidence=confidence)
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
