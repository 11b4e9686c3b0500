"""How well `inference.audio` reads a clip's note and key-held time, on renders of real presets.

`run(paths)` renders every preset (fresh Synth per render; by default velocity 0.8, 2 s, as `inference benchmark`
renders its targets with the shipped model), writes each render as a 16-bit WAV and reads it back with
`inference.audio.prepare`, exactly as `infer` would, then scores:

- pitch, at MIDI `notes` with the key held 1.5 s: the share of clips whose detected pitch class is the key's
  (every oscillator, sample and voice transpose in the shared presets is a whole number of octaves, so the key's
  pitch class is the sounding one), the share whose detected note is the sounding note (`sounding_note`), the
  clips called unpitched and those heard as several notes at once;
- note length, on `length_presets` presets spread evenly over the sorted list, at MIDI `length_note` with the
  key held each of `key_held` seconds: the error of `Target.key_held`, and whether Vital renders the preset the
  same with the detected key-held time (`equivalent`: a pluck that has died away before the key is let go
  sounds the same whenever it is let go, so a detection can be far off and still right).

The sounding note is an offline analysis that knows the key (`sounding_note`); it is no part of the detector.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

NOTES = (48, 60, 72)
KEY_HELD = (0.3, 0.8, 1.5)  # s
PITCH_KEY_HELD = 1.5  # s, as `inference benchmark` renders its targets
LENGTH_PRESETS = 12
LENGTH_NOTE = 60
SUB_ODD_DB = -20.0  # `sounding_note`: an octave down sounds when its odd partials reach this re the strongest
HARMONIC_DB = 10.0  # `sounding_note`: energy on the note's harmonics over the energy halfway between, at least
EQUIVALENT_DB = 3.0  # `equivalent`: 50 ms envelopes within this (dB), or within the preset's own render noise


def sounding_note(audio: np.ndarray, *, key: int, sample_rate: int, stop: float = PITCH_KEY_HELD) -> int | None:
    """The note a render of a key sounds, or None when no octave of the key's pitch class is a harmonic series.

    audio: (n,) float at `sample_rate` Hz, a render of MIDI `key` with the key held `stop` seconds. The spectrum of
    0.05 s .. `stop` (Hann, zero-padded to a power of two at least twice the length) is examined at each octave of
    the key from three down to two up (fundamentals 30.9 Hz and above): the sounding note is the lowest octave whose
    odd harmonics 1, 3, 5, 7 reach SUB_ODD_DB of its strongest harmonic among 1..16 (the waveform repeats at that
    period, not at half of it: a quiet sub-oscillator counts once its partials are within 20 dB of the loudest) and
    whose harmonics hold HARMONIC_DB more energy than the points halfway between them (noise, or a pitch sweep, is
    no note). Peaks are read within +-30 cents (+-1 Hz) of each harmonic.
    """
    x = np.asarray(audio, dtype=np.float64)[int(0.05 * sample_rate): int(stop * sample_rate)]
    n = 1 << int(np.ceil(np.log2(2 * len(x))))
    p = np.abs(np.fft.rfft(x * np.hanning(len(x)), n)) ** 2  # (n // 2 + 1,) power
    hz = np.arange(len(p)) * sample_rate / n

    def near(f: float, cents: float) -> np.ndarray:
        i0, i1 = np.searchsorted(hz, [f * 2 ** (-cents / 1200) - 1.0, f * 2 ** (cents / 1200) + 1.0])
        return p[i0:i1 + 1]

    for octave in range(-3, 3):
        f = 440.0 * 2 ** ((key + 12 * octave - 69) / 12)
        if f < 440.0 * 2 ** ((23 - 69) / 12) or 16 * f > sample_rate / 2:
            continue
        strongest = max(near(h * f, 30).max() for h in range(1, 17) if h * f < 10000)
        odd = max(near(h * f, 30).max() for h in (1, 3, 5, 7))
        hs = range(1, max(1, int(5000 / f)) + 1)
        on = sum(near(h * f, 20).mean() for h in hs)
        off = sum(near((h + 0.5) * f, 20).mean() for h in hs)
        if odd >= strongest * 10 ** (SUB_ODD_DB / 10) and on >= off * 10 ** (HARMONIC_DB / 10):
            return key + 12 * octave
    return None


def equivalent(a: np.ndarray, b: np.ndarray, *, sample_rate: int, floor_db: float = 0.0) -> bool:
    """Whether two renders (n,) have the same 50 ms RMS envelope: within max(EQUIVALENT_DB, floor_db + 1) dB
    wherever either is within 40 dB of the louder's peak. floor_db: the same distance between two renders of one
    setting (random phases and LFOs make a preset differ from itself)."""
    return envelope_distance(a, b, sample_rate=sample_rate) <= max(EQUIVALENT_DB, floor_db + 1.0)


def envelope_distance(a: np.ndarray, b: np.ndarray, *, sample_rate: int) -> float:
    """The largest difference (dB) of two (n,) clips' 50 ms RMS envelopes, over frames where either is within
    40 dB of the louder's peak."""
    hop = int(0.05 * sample_rate)
    n = min(len(a), len(b)) // hop
    env = [10 * np.log10(np.mean(np.asarray(x[: n * hop], np.float64).reshape(n, hop) ** 2, axis=1) + 1e-20)
           for x in (a, b)]
    top = max(e.max() for e in env)
    loud = np.maximum(*env) >= top - 40.0
    return float(np.abs(env[0] - env[1])[loud].max()) if loud.any() else 0.0


def find_vital(paths) -> list[Path]:
    """`.vital` files among `paths` (files, or folders searched recursively), sorted, each once; TargetError for
    anything else."""
    from datagen.preset import find_presets
    from inference.clips import TargetError

    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += find_presets(path)
        elif path.suffix.lower() == ".vital" and path.exists():
            found.append(path)
        else:
            raise TargetError(f"{path}: not a .vital file or a folder")
    return sorted(set(found))


def run(paths, *, notes=NOTES, key_held=KEY_HELD, length_presets: int = LENGTH_PRESETS,
        length_note: int = LENGTH_NOTE, features=None, render=None, prepare=None) -> dict:
    """Render the presets under `paths` and score the note reader (see the module docstring).

    key_held: () skips the note-length part. features: a `datagen.features.FeatureConfig` (default: the model's);
    render: a `datagen.render.RenderConfig` whose sample rate and velocity the renders take (a checkpoint's,
    `Pipeline.render`; default: the training data's defaults at the features' sample rate); clips are
    `features.duration` long;
    prepare: the reader to score (default `inference.audio.prepare`; any function of (path, features=...) giving
    an object with `.note` and, for the length part, `.key_held`, `.held_to_end` and, optionally, `.died_away`).
    Returns {"pitch": {summary}, "pitch_rows": [...], "length": {summary}, "length_rows": [...]} (plain types).
    """
    from datagen.features import FeatureConfig
    from datagen.render import RenderConfig
    from inference.clips import TargetError, wav_target  # the clip as a 16-bit WAV, read back as infer reads it

    features = features or FeatureConfig()
    render = render or RenderConfig(sample_rate=features.sample_rate)
    if render.sample_rate != features.sample_rate:
        raise ValueError(f"renders at {render.sample_rate} Hz, the features are at {features.sample_rate} Hz")
    presets = find_vital(paths)
    if not presets:
        raise TargetError("no .vital files found")
    texts = {p: p.read_text(encoding="utf-8", errors="replace") for p in presets}
    pitch_rows = []
    for preset in presets:
        for note in notes:
            audio = _render(texts[preset], note=note, held=PITCH_KEY_HELD, features=features, render=render)
            if audio is None:
                log.warning("%s at note %d: skipped (silent or refused)", preset, note)
                continue
            truth = sounding_note(audio, key=note, sample_rate=features.sample_rate)
            start = time.perf_counter()
            target = wav_target(audio, features=features, prepare=prepare)
            seconds = time.perf_counter() - start
            n = target.note
            pitch_rows.append({
                "preset": preset.stem, "path": str(preset), "key": note, "sounding": truth, "detected": n.midi,
                "cents": round(n.cents, 1), "pitched": n.pitched, "n_notes": n.n_notes, "message": n.message,
                "pitch_class_ok": bool(n.pitched and (n.midi - note) % 12 == 0),
                "octave_ok": None if truth is None else bool(n.pitched and n.midi == truth),
                "seconds": round(seconds, 3)})
    length_rows = []
    if key_held:
        chosen = [presets[i] for i in sorted(set(np.linspace(0, len(presets) - 1, min(length_presets, len(presets)))
                                                 .round().astype(int).tolist()))]
        for preset in chosen:
            for held in key_held:
                audio = _render(texts[preset], note=length_note, held=held, features=features, render=render)
                if audio is None:
                    log.warning("%s held %.2f s: skipped (silent or refused)", preset, held)
                    continue
                target = wav_target(audio, features=features, prepare=prepare)
                # the detected time: where a note that died away fell silent (candidates render it held longer)
                died_away = getattr(target, "died_away", None)  # readers from before it was reported have none
                detected = float(died_away if died_away is not None else target.key_held)
                # what Vital makes of the detected time: held to the end is rendered held past the clip's end
                again = _render(texts[preset], note=length_note, held=held, features=features, render=render)
                as_detected = _render(texts[preset], note=length_note, features=features, render=render,
                                      held=features.duration + 1.0 if target.held_to_end else max(detected, 0.01))
                floor = envelope_distance(audio, again, sample_rate=features.sample_rate)
                distance = envelope_distance(audio, as_detected, sample_rate=features.sample_rate)
                length_rows.append({
                    "preset": preset.stem, "path": str(preset), "key_held": held, "detected": round(detected, 3),
                    "held_to_end": bool(target.held_to_end), "error": round(abs(detected - held), 3),
                    "envelope_db": round(distance, 1), "floor_db": round(floor, 1),
                    "equivalent": bool(distance <= max(EQUIVALENT_DB, floor + 1.0)),
                    "message": next((m for m in target.messages if m.startswith(("key held", "held to", "died away"))),
                                    None)})
    return {"pitch": _pitch_summary(pitch_rows), "pitch_rows": pitch_rows,
            "length": _length_summary(length_rows), "length_rows": length_rows}


def _render(text: str, *, note: int, held: float, features, render) -> np.ndarray | None:
    """(n,) float32 mono render from a fresh Synth, `features.duration` long at the sample rate and velocity of
    `render`, or None when vita refuses the preset or it is silent."""
    from dataclasses import replace

    from datagen.render import Renderer

    config = replace(render, note_length=held, render_length=features.duration, mono=True)
    try:
        audio = Renderer(config).render(text, note=note)
    except Exception as e:  # a preset vita refuses
        log.warning("render failed: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        return None
    return audio if np.abs(audio).max() > 0 else None


def _pitch_summary(rows: list[dict]) -> dict:
    tonal = [r for r in rows if r["sounding"] is not None]
    share = lambda k, rs: round(sum(bool(r[k]) for r in rs) / len(rs), 4) if rs else None  # noqa: E731
    return {
        "clips": len(rows), "tonal_clips": len(tonal),
        "pitch_class": share("pitch_class_ok", rows), "pitch_class_tonal": share("pitch_class_ok", tonal),
        "octave": share("octave_ok", tonal),
        "unpitched": sum(not r["pitched"] for r in rows),
        "unpitched_tonal": sum(not r["pitched"] for r in tonal),
        "several_at_once": sum(bool(r["message"] and r["message"].startswith("several notes at once")) for r in rows),
        "mean_seconds": round(float(np.mean([r["seconds"] for r in rows])), 3) if rows else None,
        "max_seconds": round(float(np.max([r["seconds"] for r in rows])), 3) if rows else None,
    }


def _length_summary(rows: list[dict]) -> dict:
    if not rows:
        return {"cases": 0}
    errors = np.array([r["error"] for r in rows])
    return {
        "cases": len(rows), "mean_error": round(float(errors.mean()), 3), "max_error": round(float(errors.max()), 3),
        "median_error": round(float(np.median(errors)), 3),
        "within_50ms": round(float(np.mean(errors <= 0.05)), 4),
        "within_50ms_or_equivalent": round(float(np.mean([(r["error"] <= 0.05) or r["equivalent"] for r in rows])),
                                           4),
        "held_to_end": sum(r["held_to_end"] for r in rows),
        "by_key_held": {str(h): round(float(np.mean([r["error"] for r in rows if r["key_held"] == h])), 3)
                        for h in sorted({r["key_held"] for r in rows})},
    }
