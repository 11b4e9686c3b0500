"""The note a clip plays: pYIN, checked by a harmonic template over the note's long-term spectrum.

`detect_note(audio, sample_rate=...)` -> `Note` (nearest MIDI note, cents, f0 in Hz, how many notes were heard);
`harmonic_template(audio, sample_rate=...)` -> `Template` (the fundamental(s) of a harmonic spectrum, Hz).
Audio arrays are float mono, shape (n_samples,), at the stated sample rate in Hz; analysis runs at ANALYSIS_RATE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

# Second opinion on the pitch: a harmonic template over the note's long-term spectrum (`harmonic_template`).
# The spectrum is the mean power of 8192-sample frames (0.37 s, 2.7 Hz bins at ANALYSIS_RATE) within 30 dB of
# the loudest; its peaks are scored against candidate fundamentals (the strongest peaks divided by 1..10).
TEMPLATE_NFFT = 8192  # samples at ANALYSIS_RATE
TEMPLATE_HOP = 1024  # samples at ANALYSIS_RATE
TEMPLATE_ACTIVE_DB = -30.0  # frames quieter than this (re the loudest) are left out of the mean spectrum
PEAK_FLOOR_DB = -40.0  # a peak is within 40 dB of the strongest ...
PEAK_PROMINENCE_DB = 6.0  # ... and 6 dB over the median of the spectrum within +-100 Hz
PEAK_MAX_HZ = 8000.0  # partials above this are not scored
MAX_PEAKS = 40  # the strongest peaks scored
STRONGEST = 10  # candidate fundamentals: each of the 10 strongest peaks divided by 1..SUBHARMONICS
SUBHARMONICS = 10
MAX_HARMONIC = 40
TOLERANCE_CENTS = 35.0  # a peak this close to h * f0 (at most a quarter of the gap to the next harmonic) is
#                         harmonic h of f0; a detuned unison or a slow vibrato stays inside
SUB_SHARE = 0.01  # the note is the highest candidate whose harmonics hold all but 1% (-20 dB) of the peak
#                   energy the best candidate holds: a lower one must add audible partials of its own
CHORD_SHARE = 0.15  # a single harmonic series leaving 15% of the peak energy unexplained, and another series
#                     holding 15%, is several notes at once
CHORD_MIN_CENTS = 100.0  # a second note's fundamental lies a semitone or more from the first note's partials
#                          (closer is a detuned unison voice of the same note)
PEAK_SHARE = 0.5  # spectra with less of their energy in peaks (noise) have no template note
TONAL_DB = 10.0  # energy on the note's harmonics over the energy halfway between them, for a pitched verdict


@dataclass(frozen=True)
class Note:
    midi: int  # nearest MIDI note, 0..127
    cents: float  # offset of the detected pitch from `midi`, in cents, [-50, 50]
    hz: float | None  # f0 of the (first, or lowest at once) note, Hz; None when unpitched
    pitched: bool
    n_notes: int  # notes found in the analysed start of the clip (> 1: one after another, the first was used;
    #               or at once, the lowest was used; 0: unpitched)
    message: str | None  # a remark for the user ("unpitched sound: ...", "3 notes found: ...", "several notes
    #                      at once: ..."), else None


def detect_note(audio: np.ndarray, *, sample_rate: int) -> Note:
    """The note a clip plays: pYIN on its first 1.5 s (resampled to 22050 Hz), checked by a harmonic template.

    audio: (n,) float at `sample_rate` Hz, starting at the onset. Several notes one after another (abrupt pitch
    steps of a semitone or more, or voicing gaps, lasting 70 ms; see `_split_notes`): the first is used. The
    harmonic template (`harmonic_template`, over the first note) is the second opinion: it decides when pYIN finds
    no pitch (under 30% of the audible frames voiced) but the spectrum is a clear harmonic series, when the two
    disagree by other than whole octaves (pYIN locked onto a partial), when its note is whole octaves below
    pYIN's and sounds as a partial of its own (pYIN passed over a quiet sub-octave), and when it hears several
    notes at once (the lowest is used). Unpitched for both: MIDI 60, pitched=False.
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
    first_note = None  # the pYIN verdict: a Note, or None when unpitched
    segment = y  # (samples,) what the template hears: the first note when pYIN found several in a row
    if fraction >= MIN_VOICED_FRACTION and voiced.any():
        track = np.where(voiced, librosa.hz_to_midi(np.where(voiced, f0, 1.0)), np.nan)  # (frames,) MIDI
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
        message = None
        if len(notes) > 1:
            seconds = HOP_LENGTH / ANALYSIS_RATE  # per frame
            message = (f"{len(notes)} notes found: using the first "
                       f"({notes[0].start * seconds:.2f}-{notes[0].stop * seconds:.2f} s)")
            segment = y[notes[0].start * HOP_LENGTH: notes[0].stop * HOP_LENGTH + FRAME_LENGTH]
        first_note = _note(hz, n_notes=len(notes), message=message)
    template = harmonic_template(segment, sample_rate=ANALYSIS_RATE)
    if template.notes and len(template.notes) > 1:
        from inference.export import note_name

        names = " ".join(note_name(_note(f, n_notes=1, message=None).midi) for f in template.notes)
        return _note(template.notes[0], n_notes=len(template.notes),
                     message=f"several notes at once: using the lowest ({names})")
    if first_note is not None:
        if template.notes and (_off_octave(template.notes[0], first_note.hz) or (
                template.notes[0] < first_note.hz / 1.9 and template.lowest_harmonic == 1)):
            return _note(template.notes[0], n_notes=first_note.n_notes, message=first_note.message)
        return first_note
    if template.notes:
        return _note(template.notes[0], n_notes=1, message=None)
    message = f"unpitched sound ({fraction:.0%} of frames voiced): using MIDI {UNPITCHED_MIDI}"
    return Note(midi=UNPITCHED_MIDI, cents=0.0, hz=None, pitched=False, n_notes=0, message=message)


def _note(hz: float, *, n_notes: int, message: str | None) -> Note:
    """A pitched Note at `hz`: the nearest MIDI note and the cents from it."""
    exact = 69.0 + 12.0 * float(np.log2(hz / 440.0))
    midi = int(np.clip(np.floor(exact + 0.5), 0, 127))
    cents = float(np.clip(100.0 * (exact - midi), -50.0, 50.0))
    return Note(midi=midi, cents=cents, hz=float(hz), pitched=True, n_notes=n_notes, message=message)


def _off_octave(a: float, b: float) -> bool:
    """Whether two frequencies (Hz) are more than half a semitone from a whole number of octaves apart."""
    semitones = 12.0 * float(np.log2(a / b))
    return abs(semitones - 12.0 * round(semitones / 12.0)) > 0.5


@dataclass(frozen=True)
class Template:
    notes: tuple[float, ...]  # Hz, lowest first: one note, several heard at once, or () for no harmonic series
    explained: float  # share of the spectral-peak energy on the harmonics of `notes`, [0, 1]
    tonal_db: float  # energy on the lowest note's harmonics over the energy halfway between them, dB
    peak_share: float  # share of the spectrum's energy in its peaks (noise: low), about [0, 1]
    lowest_harmonic: int  # of the lowest note, the lowest harmonic among the peaks (1: its fundamental sounds)


def harmonic_template(audio: np.ndarray, *, sample_rate: int) -> Template:
    """The fundamental(s) of a harmonic spectrum, by matching its peaks to harmonic series.

    audio: (n,) float at `sample_rate` Hz (any length; shorter than TEMPLATE_NFFT is zero-padded). One note: of
    the candidate fundamentals with a peak at harmonic 1, 2 or 3 (so a missing fundamental is found), the highest
    whose harmonics hold all but SUB_SHARE of the peak energy the best one holds: a sub-octave or a fifth below
    needs audible partials of its own, and strong upper partials (6, 9, 15) do not lift the note to them.
    Several notes: when that note leaves CHORD_SHARE of the energy unexplained, series are taken greedily, each
    on a fundamental of its own a semitone or more from the partials already taken, while each holds
    CHORD_SHARE. Noise (under PEAK_SHARE of the energy in peaks) and weak series (under TONAL_DB) give no note.
    """
    p = _mean_spectrum(audio, sample_rate=sample_rate)  # (bins,) power
    freq, power, peak_share = _spectral_peaks(p, sample_rate=sample_rate)  # (peaks,) Hz, power; strongest first
    nothing = Template(notes=(), explained=0.0, tonal_db=0.0, peak_share=peak_share, lowest_harmonic=0)
    if len(freq) == 0 or peak_share < PEAK_SHARE:
        return nothing
    total = power.sum()
    every = np.ones(len(freq), dtype=bool)
    f0, mask = _best_series(freq, power, every, subharmonics=SUBHARMONICS, lowest=(1, 2, 3))
    if f0 is None:
        return nothing
    f0, mask = _sub_fundamental(freq, power, f0, mask)
    single = float(power[mask].sum() / total)
    notes, explained = [_refine(freq, power, mask, f0)], single
    if single < 1.0 - CHORD_SHARE:  # several notes at once?
        left, chord, held = every.copy(), [], 0.0
        for _ in range(4):
            f, m = _best_series(freq, power, left, subharmonics=1, lowest=(1,))
            if f is None or (chord and (power[m].sum() / total < CHORD_SHARE
                                        or any(_near_partial(f, g) for g in chord))):
                break
            chord.append(_refine(freq, power, m, f))
            held += float(power[m].sum() / total)
            left &= _harmonic_numbers(freq, f, tolerance=CHORD_MIN_CENTS) == 0
            if power[left].sum() / total < CHORD_SHARE:
                break
        if len(chord) > 1:
            notes, explained = sorted(chord), held
    tonal = _tonal_db(p, notes[0], sample_rate=sample_rate)
    if len(notes) == 1 and tonal < TONAL_DB:
        return Template(notes=(), explained=explained, tonal_db=tonal, peak_share=peak_share, lowest_harmonic=0)
    h = _harmonic_numbers(freq, notes[0])
    return Template(notes=tuple(notes), explained=explained, tonal_db=tonal, peak_share=peak_share,
                    lowest_harmonic=int(h[h > 0].min()) if (h > 0).any() else 0)


def _mean_spectrum(audio: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """(TEMPLATE_NFFT // 2 + 1,) mean power spectrum of the Hann frames within TEMPLATE_ACTIVE_DB of the loudest."""
    from scipy import signal

    x = np.asarray(audio, dtype=np.float64)
    if len(x) < TEMPLATE_NFFT:
        x = np.pad(x, (0, TEMPLATE_NFFT - len(x)))
    _, _, z = signal.stft(x, fs=sample_rate, window="hann", nperseg=TEMPLATE_NFFT,
                          noverlap=TEMPLATE_NFFT - TEMPLATE_HOP, boundary=None, padded=False)
    power = np.abs(z) ** 2  # (bins, frames)
    energy = power.sum(axis=0)  # (frames,)
    return power[:, energy >= energy.max() * 10 ** (TEMPLATE_ACTIVE_DB / 10)].mean(axis=1)


def _spectral_peaks(p: np.ndarray, *, sample_rate: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Peaks of a power spectrum p (bins,): frequencies (Hz, parabolic on log power) and powers, the strongest
    MAX_PEAKS first, and the share of the energy between FMIN and PEAK_MAX_HZ in their main lobes (+-2 bins)."""
    from scipy.ndimage import median_filter

    step = sample_rate / TEMPLATE_NFFT  # Hz per bin
    hz = np.arange(len(p)) * step
    floor = median_filter(p, size=int(round(200.0 / step)) | 1, mode="nearest")  # (bins,)
    band = (hz >= FMIN * 0.97) & (hz <= PEAK_MAX_HZ)
    i = np.arange(1, len(p) - 1)
    i = i[(p[i] > p[i - 1]) & (p[i] >= p[i + 1]) & band[i] & (p[i] >= p.max() * 10 ** (PEAK_FLOOR_DB / 10))
          & (p[i] >= floor[i] * 10 ** (PEAK_PROMINENCE_DB / 10))]
    if len(i) == 0:
        return np.zeros(0), np.zeros(0), 0.0
    a, b, c = (np.log(p[i + k] + 1e-30) for k in (-1, 0, 1))
    curve = a - 2 * b + c  # < 0 at a strict maximum
    d = np.where(curve < 0, 0.5 * (a - c) / np.where(curve < 0, curve, -1.0), 0.0)  # bins, [-0.5, 0.5]
    lobes = np.zeros(len(p), dtype=bool)
    for k in range(-2, 3):
        lobes[np.clip(i + k, 0, len(p) - 1)] = True
    share = float(p[lobes & band].sum() / max(p[band].sum(), 1e-30))
    order = np.argsort(b)[::-1][:MAX_PEAKS]
    return ((i + d) * step)[order], np.exp(b - 0.25 * (a - c) * d)[order], share


def _harmonic_numbers(freq: np.ndarray, f0: float, *, tolerance: float = TOLERANCE_CENTS) -> np.ndarray:
    """(peaks,) int: the harmonic number of each peak of f0 (Hz), 0 where a peak is no harmonic: further than
    `tolerance` cents, or a quarter of the gap to the next harmonic, from h * f0, or above MAX_HARMONIC."""
    h = np.maximum(np.round(freq / f0), 1.0)
    cents = np.abs(1200.0 * np.log2(freq / (h * f0)))
    limit = np.minimum(tolerance, 300.0 * np.log2((h + 1.0) / h))
    return np.where((h <= MAX_HARMONIC) & (cents <= limit), h, 0).astype(int)


def _best_series(freq, power, pool, *, subharmonics: int, lowest: tuple[int, ...]):
    """The note among the peaks in `pool` ((peaks,) bool): candidates are the STRONGEST strongest pool peaks
    divided by 1..`subharmonics`, each with a pool peak at one of its `lowest` harmonics; the highest holding
    within SUB_SHARE of the most any candidate holds. Returns (f0 Hz, (peaks,) bool of its harmonics) or
    (None, None)."""
    strong = freq[pool][:STRONGEST]
    candidates = np.unique(np.concatenate([strong / h for h in range(1, subharmonics + 1)]))
    best = []  # (f0, power held, mask)
    for f in candidates[(candidates >= FMIN * 0.97) & (candidates <= FMAX)]:
        h = np.where(pool, _harmonic_numbers(freq, f), 0)
        if np.isin(h, lowest).any():
            best.append((float(f), float(power[h > 0].sum()), h > 0))
    if not best:
        return None, None
    most = max(held for _, held, _ in best)
    f0, _, mask = max((b for b in best if b[1] >= most - SUB_SHARE * power.sum()), key=lambda b: b[0])
    return f0, mask


def _sub_fundamental(freq, power, f0: float, mask):
    """f0 (Hz), or a fundamental under it: f0 / m (m = 2..SUBHARMONICS) sounding as a peak of its own, whose
    harmonics 1..16 that are no harmonic of f0 hold SUB_SHARE of the peak energy (a quiet sub-oscillator, which
    `_best_series` can miss: a lower f0 reaches fewer partials under MAX_HARMONIC), the highest such; repeated
    from each one found. Returns (f0, (peaks,) bool of its harmonics)."""
    found = True
    while found:
        found = False
        for m in range(2, SUBHARMONICS + 1):
            g = f0 / m
            if g < FMIN * 0.97:
                break
            h = _harmonic_numbers(freq, g)
            own = (h >= 1) & (h <= 16) & (_harmonic_numbers(freq, f0) == 0)
            if (h == 1).any() and power[own].sum() >= SUB_SHARE * power.sum():
                f0, mask, found = g, h > 0, True
                break
    return f0, mask


def _near_partial(f: float, g: float) -> bool:
    """Whether f lies within CHORD_MIN_CENTS of a harmonic of g, or g of f (Hz): a detuned voice, not a note."""
    lo, hi = sorted((f, g))
    h = max(1.0, round(hi / lo))
    return abs(1200.0 * np.log2(hi / (h * lo))) < CHORD_MIN_CENTS


def _refine(freq, power, mask, f0: float) -> float:
    """f0 (Hz) from the power-weighted mean of its harmonics 1..8 among the peaks in `mask`, each divided by h."""
    h = np.round(freq / f0)
    use = mask & (h <= 8)
    if not use.any():
        return float(f0)
    return float(np.sum(power[use] * freq[use] / h[use]) / np.sum(power[use]))


def _tonal_db(p: np.ndarray, f0: float, *, sample_rate: int) -> float:
    """Energy within +-20 cents of f0's harmonics below 5 kHz over the energy halfway between them, in dB."""
    step = sample_rate / TEMPLATE_NFFT

    def mean_near(centre: float) -> float:
        lo, hi = centre * 2 ** (-20 / 1200) - step, centre * 2 ** (20 / 1200) + step
        return float(p[int(np.floor(lo / step)): int(np.ceil(hi / step)) + 1].mean())

    hs = range(1, max(1, int(5000.0 / f0)) + 1)
    on = sum(mean_near(h * f0) for h in hs)
    off = sum(mean_near((h + 0.5) * f0) for h in hs)
    return float(10.0 * np.log10((on + 1e-30) / (off + 1e-30)))


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
