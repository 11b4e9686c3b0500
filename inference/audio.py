"""The user's clip, made ready for the model: read, checked, trimmed, pitched, normalised, fitted.

`prepare(path, features=...)` is the one entry point the inference pipeline uses:

    read (any rate, depth, channel count soundfile reads; at most `max_seconds`) -> mono -> resample (soxr)
    -> trim leading silence -> remove DC -> detect the note (pYIN) -> RMS-normalise -> fit to the model length

Every bad input raises `AudioError` with a one-line message (the CLI prints `error: ...`, exit code 2); every
remark (resampled, mixed to mono, trimmed, several notes, unpitched, truncated) is logged at INFO and kept in
`Target.messages`. Audio arrays are float32 mono, shape (n_samples,), at the stated sample rate in Hz.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datagen.features import FeatureConfig, fit_length

log = logging.getLogger(__name__)

# Leading-silence trim: a 5 ms RMS envelope, everything before the first frame within 50 dB of the loudest
# frame is silence; 5 ms before the onset are kept so the attack is not cut.
TRIM_FRAME_SECONDS = 0.005
TRIM_THRESHOLD_DB = -50.0
TRIM_PREROLL_SECONDS = 0.005


def midi_to_hz(midi: float) -> float:
    """Equal-tempered frequency of a (fractional) MIDI note, A4 = 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


# Pitch detection (pYIN). Its Viterbi pass costs (pitch bins)^2 per frame, so it runs on at most 1.5 s at
# 22050 Hz with 0.2-semitone bins (0.1 is ~5x slower); cents come from a YIN refinement, not from the bins.
ANALYSIS_RATE = 22050  # Hz
ANALYSIS_SECONDS = 1.5
FRAME_LENGTH = 2048  # samples at ANALYSIS_RATE (93 ms: about three periods of the lowest note)
HOP_LENGTH = 512  # samples at ANALYSIS_RATE (23 ms)
FMIN = midi_to_hz(23)  # Hz: B0 (30.9 Hz); an equal-tempered note, so the bins land on notes
FMAX = midi_to_hz(110)  # Hz: D8 (4699 Hz); YIN needs periods above 4 samples to find C8
RESOLUTION = 0.2  # semitones per pYIN pitch bin
MIN_VOICED_PROB = 0.02  # pYIN may flag noise voiced, but at its no-trough floor (0.01); a tone 6 dB over
#                         noise scores above 0.02
ACTIVE_DB = -40.0  # frames quieter than this (re the loudest) are ignored: a decayed tail is not "unpitched"
MIN_VOICED_FRACTION = 0.3  # of the active frames; below it the sound is unpitched
JUMP_SEMITONES = 1.0  # an abrupt step (half this, frame to frame) to a pitch this far from the note's median
SUSTAIN_FRAMES = 3  # ... held for this many frames (70 ms), or an unvoiced gap this long, starts a new note
UNPITCHED_MIDI = 60  # C4, what an unpitched sound is played at


class AudioError(ValueError):
    """A clip that cannot be used (missing, not audio, empty, silent, too short, NaN): one line for the user."""


@dataclass(frozen=True)
class Note:
    midi: int  # nearest MIDI note, 0..127
    cents: float  # offset of the detected pitch from `midi`, in cents, [-50, 50]
    hz: float | None  # median f0 of the (first) note, Hz; None when unpitched
    pitched: bool
    n_notes: int  # notes found in the analysed start of the clip (> 1: the first was used; 0: unpitched)
    message: str | None  # a remark for the user ("unpitched sound: ...", "3 notes found: ..."), else None


@dataclass(frozen=True)
class Target:
    audio: np.ndarray  # (n_samples,) float32 mono at sample_rate: DC removed, leading silence trimmed,
    #                    RMS-normalised to target_rms_db, truncated or zero-padded to the model length
    sample_rate: int  # Hz
    note: Note
    duration: float  # seconds of the clip after trimming, before fitting to the model length
    source: str  # the path as given
    truncated: bool  # the clip was longer than the model hears
    messages: tuple[str, ...]  # every remark logged while preparing, in order


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


def trim_leading_silence(audio: np.ndarray, *, sample_rate: int) -> int:
    """Index of the first sample to keep: 5 ms before the first 5 ms frame within 50 dB of the loudest frame.

    audio: (n,) float. The envelope is taken above 10 Hz (a high-pass started in its steady state), so a DC
    offset, or the mean of a loud note spread over the silence before it, never counts as sound.
    """
    from scipy import signal

    sos = signal.butter(2, 10.0, btype="highpass", fs=sample_rate, output="sos")
    x = np.asarray(audio, dtype=np.float64)
    x, _ = signal.sosfilt(sos, x, zi=signal.sosfilt_zi(sos) * x[0])  # (n,) no start-up transient
    frame = max(1, int(round(TRIM_FRAME_SECONDS * sample_rate)))  # samples
    n_frames = -(-len(x) // frame)
    padded = np.zeros(n_frames * frame)
    padded[: len(x)] = x
    env = np.sqrt(np.mean(padded.reshape(n_frames, frame) ** 2, axis=1))  # (n_frames,) RMS
    onset = int(np.argmax(env >= env.max() * 10 ** (TRIM_THRESHOLD_DB / 20)))  # frame index
    return max(0, onset * frame - int(round(TRIM_PREROLL_SECONDS * sample_rate)))


def detect_note(audio: np.ndarray, *, sample_rate: int) -> Note:
    """The note a clip plays, from pYIN on its first 1.5 s (resampled to 22050 Hz).

    audio: (n,) float at `sample_rate` Hz, starting at the onset. Several notes (abrupt pitch steps of a
    semitone or more, or voicing gaps, lasting 70 ms; see `_split_notes`): the first is used. Unpitched
    (under 30% of the audible frames voiced): MIDI 60, pitched=False.
    """
    import librosa

    y = np.asarray(audio, dtype=np.float32)[: int(ANALYSIS_SECONDS * sample_rate)]
    if sample_rate != ANALYSIS_RATE:
        import soxr

        y = soxr.resample(y, sample_rate, ANALYSIS_RATE)
    y = np.ascontiguousarray(y, dtype=np.float32)
    # all (frames,), frame k centred at k * HOP_LENGTH samples
    f0, flag, prob = librosa.pyin(y, fmin=FMIN, fmax=FMAX, sr=ANALYSIS_RATE, frame_length=FRAME_LENGTH,
                                  hop_length=HOP_LENGTH, resolution=RESOLUTION)
    rms = librosa.feature.rms(y=y, frame_length=FRAME_LENGTH, hop_length=HOP_LENGTH)[0]
    n = min(len(f0), len(rms))
    f0, flag, prob, rms = f0[:n], flag[:n], prob[:n], rms[:n]
    active = rms >= rms.max() * 10 ** (ACTIVE_DB / 20)
    voiced = flag & (prob >= MIN_VOICED_PROB) & active & np.isfinite(f0)
    fraction = voiced.sum() / max(1, active.sum())
    if fraction < MIN_VOICED_FRACTION or not voiced.any():
        message = f"unpitched sound ({fraction:.0%} of frames voiced): using MIDI {UNPITCHED_MIDI}"
        return Note(midi=UNPITCHED_MIDI, cents=0.0, hz=None, pitched=False, n_notes=0, message=message)

    track = np.where(voiced, librosa.hz_to_midi(np.where(voiced, f0, 1.0)), np.nan)  # (frames,) MIDI, NaN unvoiced
    notes = _split_notes(track) or [range(n)]
    first = np.zeros(n, dtype=bool)
    first[notes[0].start:notes[0].stop] = True
    first &= voiced
    # pYIN's f0 sits on 0.2-semitone bins; YIN's (parabolically interpolated) estimate gives the cents,
    # taken only where it agrees with pYIN to half a semitone (YIN alone makes octave errors).
    fine = librosa.yin(y, fmin=FMIN, fmax=FMAX, sr=ANALYSIS_RATE, frame_length=FRAME_LENGTH,
                       hop_length=HOP_LENGTH)[:n]
    agree = first & (np.abs(librosa.hz_to_midi(fine) - track) < 0.5)
    hz = float(np.median(fine[agree] if agree.any() else f0[first]))
    exact = float(librosa.hz_to_midi(hz))
    midi = int(np.clip(np.floor(exact + 0.5), 0, 127))
    cents = float(np.clip(100.0 * (exact - midi), -50.0, 50.0))
    message = None
    if len(notes) > 1:
        seconds = HOP_LENGTH / ANALYSIS_RATE  # per frame
        message = (f"{len(notes)} notes found: using the first "
                   f"({notes[0].start * seconds:.2f}-{notes[0].stop * seconds:.2f} s)")
    return Note(midi=midi, cents=cents, hz=hz, pitched=True, n_notes=len(notes), message=message)


def _split_notes(track: np.ndarray) -> list[range]:
    """Frame ranges of the notes in a MIDI pitch track ((frames,), NaN where unvoiced).

    A note ends where SUSTAIN_FRAMES unvoiced frames follow it, or where the pitch steps abruptly (by
    JUMP_SEMITONES / 2 or more from the previous voiced frame) to SUSTAIN_FRAMES frames in a row that lie
    JUMP_SEMITONES or more from the note's median so far. A glitch of a frame or two (an octave error) stays
    inside the note; so does a glide (a pitch envelope, portamento), whose steps are small. Notes with fewer
    than SUSTAIN_FRAMES voiced frames are dropped.
    """
    notes, start, last, gap = [], None, -1, 0  # start, last: frame indices of the current note
    for i, m in enumerate(track):
        if np.isnan(m):
            gap += 1
            if start is not None and gap >= SUSTAIN_FRAMES:
                notes.append(range(start, last + 1))
                start = None
            continue
        gap = 0
        if start is not None:
            ref = np.nanmedian(track[start:i])
            ahead = track[i:i + SUSTAIN_FRAMES]  # NaN compares False: a gap inside `ahead` is no jump
            abrupt = abs(m - track[last]) >= JUMP_SEMITONES / 2
            if abrupt and len(ahead) == SUSTAIN_FRAMES and np.all(np.abs(ahead - ref) >= JUMP_SEMITONES):
                notes.append(range(start, last + 1))
                start = None
        if start is None:
            start = i
        last = i
    if start is not None:
        notes.append(range(start, last + 1))
    return [r for r in notes if np.count_nonzero(~np.isnan(track[r.start:r.stop])) >= SUSTAIN_FRAMES]


def prepare(path: str | os.PathLike, *, features: FeatureConfig, max_seconds: float = 30.0) -> Target:
    """Read `path` and make it what the model hears (see the module docstring). Raises AudioError."""
    sr = features.sample_rate
    clip = _read(path, sample_rate=sr, max_seconds=max_seconds, min_samples=features.n_fft)
    messages = list(clip.messages)
    audio = clip.audio.astype(np.float64)  # (n,)
    start = trim_leading_silence(audio, sample_rate=sr)  # blind to DC, so trimming comes first
    if start > 0:
        messages.append(f"trimmed {start / sr:.3f} s of leading silence")
        audio = audio[start:]
        _check_length(path, len(audio), sample_rate=sr, min_samples=features.n_fft,
                      after=" after trimming leading silence")
    audio -= audio.mean()  # (n,) DC removed: zero mean over what is kept
    note = detect_note(audio, sample_rate=sr)
    if note.message:
        messages.append(note.message)
    rms = float(np.sqrt(np.mean(audio**2)))
    if rms == 0.0:
        raise AudioError(f"{path}: is digital silence after removing its DC offset")
    if features.target_rms_db is not None:
        audio *= 10 ** (features.target_rms_db / 20) / rms
    duration = len(audio) / sr  # seconds
    truncated = len(audio) > features.n_samples
    if truncated:
        messages.append(f"clip is {duration:.2f} s, the model hears the first {features.duration:.2f} s")
    for message in messages:
        log.info("%s: %s", path, message)
    return Target(audio=fit_length(audio, features.n_samples).astype(np.float32), sample_rate=sr, note=note,
                  duration=duration, source=str(path), truncated=truncated, messages=tuple(messages))
