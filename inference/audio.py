"""The user's clip, made ready for the model: read, checked, trimmed, pitched, normalised, fitted.

`prepare(path, features=...)` is the one entry point the inference pipeline uses:

    read (any rate, depth, channel count soundfile reads; at most `max_seconds`) -> mono -> resample (soxr)
    -> trim leading silence -> remove DC -> detect the note (pYIN, checked by a harmonic template)
    -> detect the key-held time (amplitude envelope) -> RMS-normalise -> fit to the model length

Every bad input raises `AudioError` with a one-line message (the CLI prints `error: ...`, exit code 2); every
remark (resampled, mixed to mono, trimmed, several notes, unpitched, key-held time, truncated) is logged at INFO
and kept in `Target.messages`. Audio arrays are float32 mono, shape (n_samples,), at the stated sample rate in Hz.
Pitch detection (`detect_note`, `Note`) lives in inference/pitch.py, the key-held time (`detect_release`) in
inference/release.py.

`Target.key_held` is the time to hold the key when rendering candidates (`RenderConfig.note_length`): the
detected release, or the clip's length (at most the model's) when the note is held to the end or has died away
on its own. Why the whole clip for a note that died away: the target sounds the same however long its key is
held, so a candidate must too. Rendered only as long as the target sounded, a candidate that sustains and stops
at a quick release scores as well, and then drones for as long as a producer holds the key (White Noise Hi-Hat
at 72: a 0.13 s hold found a sustained noise, 40 dB too loud over the held second; research/benchmarks.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datagen.features import FeatureConfig, fit_length, normalise_rms, rms
from datagen.features import prepare as clip_prepare  # inference.audio.prepare reads a file; this one an array
from inference.pitch import Note, detect_note
from inference.release import detect_release

log = logging.getLogger(__name__)

# Suffixes taken for audio files where only a name can tell (`infer FOLDER`, `benchmark` inputs): the formats
# soundfile reads, MP3 included (libsndfile >= 1.1). `infer` tries a file it is given by name whatever its suffix.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")



class AudioError(ValueError):
    """A clip that cannot be used (missing, not audio, empty, silent, too short, NaN): one line for the user."""


@dataclass(frozen=True)
class Target:
    audio: np.ndarray  # (n_samples,) float32 mono at sample_rate: DC removed, leading silence trimmed,
    #                    RMS-normalised to target_rms_db, truncated or zero-padded to the model length
    sample_rate: int  # Hz
    note: Note
    duration: float  # seconds of the clip after trimming, before fitting to the model length
    source: str  # the path as given
    truncated: bool  # the clip was longer than the model hears
    key_held: float  # seconds from the onset (after trimming) to the detected release: what to render the
    #                  candidates with (`RenderConfig.note_length`); held to the end or died away: `duration`, at
    #                  most the model length
    held_to_end: bool  # no release within the clip: the note is still held when it ends
    messages: tuple[str, ...]  # every remark logged while preparing, in order
    died_away: float | None = None  # seconds to where the note died away on its own (no release seen), else None
    level: float | None = None  # RMS of `audio` before normalising (as read, trimmed, DC removed, fitted): the level
    #                             it was recorded at, which sets how loud its quantisation noise is (`clips.as_heard`)


@dataclass(frozen=True)
class _Clip:
    audio: np.ndarray  # (n,) float32 mono at the requested rate
    messages: tuple[str, ...]


def read_audio(path: str | os.PathLike, *, sample_rate: int, max_seconds: float = 30.0,
               min_samples: int = FeatureConfig.n_fft) -> np.ndarray:
    """(n,) float32 mono at `sample_rate` Hz: the first `max_seconds` of the file (never more is read),
    channels averaged, resampled with soxr. Raises AudioError for a missing, unreadable, empty, silent or
    non-finite file, and for one shorter than `min_samples` at `sample_rate` (default: one STFT frame)."""
    clip = _read(path, sample_rate=sample_rate, max_seconds=max_seconds, min_samples=min_samples)
    for message in clip.messages:
        log.info("%s: %s", path, message)
    return clip.audio


def _read(path, *, sample_rate: int, max_seconds: float, min_samples: int) -> _Clip:
    import soundfile as sf

    if sample_rate <= 0 or max_seconds <= 0:
        raise AudioError(f"sample_rate and max_seconds must be positive, got {sample_rate} and {max_seconds}")
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{path}: no such file")
    if p.is_dir():
        raise AudioError(f"{path}: is a directory, expected an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{path}: contains no audio (the file is empty)")
    try:
        with sf.SoundFile(str(p)) as f:
            rate, channels, total = f.samplerate, f.channels, f.frames
            limit = int(round(max_seconds * rate))  # frames at the file's rate
            raw = f.read(frames=limit, dtype="float32", always_2d=True)  # (frames, channels), at most `limit`
    except (sf.LibsndfileError, RuntimeError) as e:
        reason = getattr(e, "error_string", None) or str(e)
        raise AudioError(f"{path}: not an audio file soundfile can read ({reason.strip().rstrip('.')})") from None
    messages = []
    if total > limit:
        messages.append(f"file is {total / rate:.2f} s long: read the first {max_seconds:.2f} s, the rest is ignored")
    if raw.shape[0] == 0:
        raise AudioError(f"{path}: contains no audio (0 frames)")
    if not np.isfinite(raw).all():
        raise AudioError(f"{path}: contains NaN or infinite samples")
    mono = raw.mean(axis=1) if channels > 1 else raw[:, 0]  # (frames,)
    if channels > 1:
        messages.append(f"mixed {channels} channels to mono")
    if not mono.any():
        cancelled = " (its channels cancel out when mixed to mono)" if raw.any() else ""
        raise AudioError(f"{path}: is digital silence{cancelled}")
    if np.ptp(mono) == 0:
        raise AudioError(f"{path}: is digital silence (a constant DC offset)")
    if rate != sample_rate:
        import soxr

        mono = soxr.resample(mono, rate, sample_rate)
        messages.append(f"resampled from {rate} Hz to {sample_rate} Hz")
    _check_length(path, len(mono), sample_rate=sample_rate, min_samples=min_samples)
    return _Clip(audio=np.ascontiguousarray(mono, dtype=np.float32), messages=tuple(messages))


def _check_length(path, n: int, *, sample_rate: int, min_samples: int, after: str = "") -> None:
    if n < min_samples:
        raise AudioError(f"{path}: clip is {n / sample_rate:.3f} s long{after}, the minimum is "
                         f"{min_samples / sample_rate:.3f} s (one {min_samples}-sample frame at {sample_rate} Hz)")


def recording_level(audio: np.ndarray, *, features: FeatureConfig) -> float:
    """`Target.level` of a clip already trimmed and DC-removed (`datagen.features.prepare`): its RMS over what the
    model hears (fitted to `features.n_samples`; 0 if that part is silent). The one definition: `prepare` stores
    it, `inference.clips.as_heard` scales a render to it."""
    return float(rms(fit_length(audio, features.n_samples)))


def prepare(path: str | os.PathLike, *, features: FeatureConfig, max_seconds: float = 30.0) -> Target:
    """Read `path` and make it what the model hears (see the module docstring). Raises AudioError."""
    sr = features.sample_rate
    clip = _read(path, sample_rate=sr, max_seconds=max_seconds, min_samples=features.n_fft)
    messages = list(clip.messages)
    prepared = clip_prepare(clip.audio, sample_rate=sr)  # what data sets do to a render: trim, remove DC
    audio, start = prepared.audio, prepared.start  # (n,) float64
    if start > 0:
        messages.append(f"trimmed {start / sr:.3f} s of leading silence")
        _check_length(path, len(audio), sample_rate=sr, min_samples=features.n_fft,
                      after=" after trimming leading silence")
    note = detect_note(audio, sample_rate=sr)
    if note.message:
        messages.append(note.message)
    duration = len(audio) / sr  # seconds
    release = detect_release(audio, sample_rate=sr)
    held_to_end = release.how == "held"
    died_away = release.seconds if release.how == "died away" else None  # s
    # s; a note that died away is rendered held to the end too, so candidates must die away on their own
    key_held = release.seconds if release.how == "released" else min(duration, features.duration)
    if held_to_end:
        messages.append("held to the end")
    elif died_away is not None:
        messages.append(f"died away by {died_away:.2f} s (holding the key longer sounds the same: candidates "
                        f"are rendered held {key_held:.2f} s)")
    else:
        messages.append(f"key held {key_held:.2f} s")
    if rms(audio) == 0.0:
        raise AudioError(f"{path}: is digital silence after removing its DC offset")
    level = recording_level(audio, features=features)
    if features.target_rms_db is not None:
        audio = normalise_rms(audio, rms_db=features.target_rms_db, floor=0.0)  # float64; silence refused above
    truncated = len(audio) > features.n_samples
    if truncated:
        messages.append(f"clip is {duration:.2f} s, the model hears the first {features.duration:.2f} s")
    for message in messages:
        log.info("%s: %s", path, message)
    return Target(audio=fit_length(audio, features.n_samples).astype(np.float32), sample_rate=sr, note=note,
                  duration=duration, source=str(path), truncated=truncated, key_held=key_held,
                  held_to_end=held_to_end, messages=tuple(messages), died_away=died_away,
                  level=level)
