"""Writing results: the `.vital` file a producer opens, its audio, and a target-vs-prediction figure.

`export(preset, path, ...)` fills the preset's name / author / comments and writes it through
`datagen.preset.write_vital` (wavetables injected per oscillator, modulations in the `modulations` array and
the `modulation_N_*` settings, a real `synth_version`), atomically.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from datagen.atomic import atomic_path

AUTHOR = "vital-match"
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(midi: int) -> str:
    """MIDI 60 -> "C4" (scientific pitch notation: 261.6 Hz)."""
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def export(preset, path: str | Path, *, name: str, comments: str = "", registry=None) -> Path:
    """Write `preset` as a `.vital` file named `name` (Vital shows it in its browser)."""
    from datagen.preset import write_vital

    meta = {**preset.meta, "preset_name": name, "author": AUTHOR, "comments": comments, "preset_style": ""}
    return write_vital(replace(preset, meta=meta), path, registry=registry)


def render(preset, *, note: int, config, seconds: float, key_held: float | None = None) -> np.ndarray:
    """(samples,) float32 mono render of `preset` at `note`, `seconds` long at the sample rate and velocity of
    `config` (a `datagen.render.RenderConfig`: the checkpoint's, `Pipeline.render`), the key held `key_held`
    seconds (default: as in training, 3/4 of the time at most; `RenderConfig.for_clip`)."""
    from datagen.render import Renderer

    return Renderer(config.for_clip(seconds=seconds, key_held=key_held)).render(preset, note=note)


def write_wav(audio: np.ndarray, path: str | Path, *, sample_rate: int) -> Path:
    """16-bit WAV (or FLAC, by the suffix), written atomically, peak-limited to -1 dBFS when the render clips (Vital's output can exceed 1.0)."""
    import soundfile as sf

    peak = float(np.abs(audio).max()) if audio.size else 0.0
    limit = 10 ** (-1 / 20)
    if peak > limit:
        audio = audio * (limit / peak)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio, sample_rate, subtype="PCM_16")
    return Path(path)


def plot(spectra: dict[str, np.ndarray], path: str | Path, *, features, title: str = "") -> Path:
    """One log-mel panel per entry of `spectra` ({"target": audio, "prediction": audio, ...}), same scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from datagen.features import log_mel

    mels = {k: log_mel(np.asarray(v, np.float32), features) for k, v in spectra.items()}
    hi = max(float(m.max()) for m in mels.values())
    fig, axes = plt.subplots(1, len(mels), figsize=(4 * len(mels), 3.2), sharey=True, squeeze=False)
    for ax, (label, mel) in zip(axes[0], mels.items()):
        ax.imshow(mel, origin="lower", aspect="auto", vmin=hi - 80 / 4.34, vmax=hi, cmap="magma",
                  extent=(0, features.duration, 0, features.n_mels))  # 80 dB range (ln power: 4.34 dB per nat)
        ax.set_title(label)
        ax.set_xlabel("seconds")
    axes[0][0].set_ylabel("mel band")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return Path(path)


def export_match(result, path: str | Path, *, stem: str, pipeline, by: str = "vital-match") -> Path:
    """Write a `match.Match`'s final preset as `.vital`, named "<stem> (vital-match)", its comment saying where
    it came from (clip, note, checkpoint, refinement budget). The CLI and the demo both write through this."""
    r = result.refinement
    comment = (f"Predicted from {Path(result.source).name} by {by}, checkpoint {pipeline.path.name}; matched at "
               f"{note_name(result.note.midi)}, {held_text(result.target)}"
               + (f"; refined {r.evaluations} renders ({r.method})" if r is not None else ""))
    return export(result.preset, path, name=f"{stem} (vital-match)", comments=comment, registry=pipeline.registry)


def held_text(target) -> str:
    """How long the key was held in a clip, as the exported preset and the printed result say it."""
    if target.died_away is not None:
        return f"died away by {target.died_away:.2f} s"
    return "held to the end" if target.held_to_end else f"key held {target.key_held:.2f} s"


def match_audio(result, *, pipeline) -> dict[str, np.ndarray]:
    """{"target", "prediction"[, "refined"]}: (samples,) audio at the clip's note and key-held time, the target
    as the model heard it; "refined" only when refinement ran."""
    config, seconds, note = pipeline.render, pipeline.features.duration, result.note.midi
    held = result.target.key_held
    audio = {"target": result.target.audio,
             "prediction": render(result.prediction.preset, note=note, config=config, seconds=seconds, key_held=held)}
    if result.refinement is not None:
        audio["refined"] = render(result.refinement.preset, note=note, config=config, seconds=seconds,
                                  key_held=held)
    return audio
