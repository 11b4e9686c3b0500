"""When the key was let go: the key-held time of a clip, from its amplitude envelope.

`detect_release(audio, sample_rate=...)` -> `Release` (seconds from the onset, and whether the note was released,
died away or is held to the end); `envelope_db` gives the (frames,) RMS envelope in dB and its times in seconds.
Audio arrays are float mono, shape (n_samples,), at the stated sample rate in Hz.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


# Key-held time (`detect_release`): a 10 ms RMS envelope every 5 ms, in dB re its loudest frame, with a 40 ms
# running maximum that bridges tremolo and gate dips. A release is the first fall, from a level within 30 dB of
# the peak, of RELEASE_DROP_DB (median over the next 60-260 ms) that never comes back within RELEASE_RECOVER_DB
# of the level held before it (RELEASE_END_DROP_DB in the clip's last 260 ms); the release time is where the
# envelope leaves that level (3 dB under it).
ENVELOPE_FRAME = 0.010  # s
ENVELOPE_HOP = 0.005  # s
ENVELOPE_SMOOTH = 0.040  # s, running-maximum width
RELEASE_DROP_DB = 6.0
RELEASE_END_DROP_DB = 15.0  # the fall asked of a release with under 260 ms of the clip left after it
RELEASE_RECOVER_DB = 3.0
RELEASE_TOP_DB = -30.0  # falls starting lower than this (re the peak) are tails, not releases
RELEASE_KNEE_DB = 3.0
RELEASE_HELD_SECONDS = 0.15  # the held level: median of the 150 ms before
FAST_ATTACK = 0.05  # s: a fall starting within DECAY_GAP of a peak reached this fast is the note's decay
DECAY_GAP = 0.10  # s   (plucks, mallets, drums), not a release: the search goes on after it
DEAD_DB = -50.0  # a note that falls this far under its peak, with no release found, has died away


@dataclass(frozen=True)
class Release:
    seconds: float  # from the start of the audio to the release (or to where the note died away); held: its length
    how: str  # "released", "died away" (no release, the note fell DEAD_DB under its peak: holding the key any
    #           longer renders the same) or "held" (still sounding at the end)


def envelope_db(audio: np.ndarray, *, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames,) RMS of ENVELOPE_FRAME windows every ENVELOPE_HOP, in dB re the loudest (floor -100 dB), and
    (frames,) their centre times in seconds. audio: (n,) float at `sample_rate` Hz."""
    frame = max(1, int(round(ENVELOPE_FRAME * sample_rate)))
    hop = max(1, int(round(ENVELOPE_HOP * sample_rate)))
    x = np.asarray(audio, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(x * x)])  # (n + 1,)
    starts = np.arange(0, max(1, len(x) - frame + 1), hop)  # (frames,)
    mean_square = (c[np.minimum(starts + frame, len(x))] - c[starts]) / frame
    db = 10.0 * np.log10(mean_square + 1e-20)
    return np.maximum(db - db.max(), -100.0), (starts + frame / 2) / sample_rate


def detect_release(audio: np.ndarray, *, sample_rate: int) -> Release:
    """When the key was let go, from the amplitude envelope (see the constants at the top of this module).

    audio: (n,) float at `sample_rate` Hz, starting at the onset. Falls starting within DECAY_GAP of a fast
    attack's peak are the note's own decay (a pluck, a mallet, a drum) and the search goes on past them. A note
    that dies away (DEAD_DB under its peak) with no release seen is reported at that time: Vital renders a note
    that has decayed to silence the same however much longer the key is held, so that is the shortest key-held
    time that reproduces it. A pluck decaying while the key is held and released before it dies shows the release
    as a fall steeper than its decay, found like any other. Effects tails (reverb, delay) after a release that
    fall less than RELEASE_DROP_DB may hide it: the note then reads as held.
    """
    from scipy.ndimage import maximum_filter1d

    env, times = envelope_db(audio, sample_rate=sample_rate)  # (frames,) dB, s
    n = len(env)

    def frames(seconds: float) -> int:
        return int(round(seconds / ENVELOPE_HOP))

    env = maximum_filter1d(env, size=frames(ENVELOPE_SMOOTH) | 1)  # (frames,) dips under 40 ms bridged
    peak = int(np.argmax(env))
    future = np.maximum.accumulate(env[::-1])[::-1]  # (frames,) the loudest from each frame on
    onset = int(np.argmax(env > RELEASE_TOP_DB))
    fast_attack = peak - onset <= frames(FAST_ATTACK)
    a0, a1 = frames(0.06), frames(0.26)  # the level after a frame: the median over 60..260 ms after it
    i = start = peak  # the held level is read from `start` on: after a decay, not over it
    while i + a0 + frames(0.04) < n:
        held = float(np.median(env[max(start, i - frames(RELEASE_HELD_SECONDS)): i + 1]))
        if held < RELEASE_TOP_DB:
            break
        after = float(np.median(env[i + a0: min(n, i + a1)]))
        drop = RELEASE_DROP_DB if i + a1 <= n else RELEASE_END_DROP_DB  # near the end, a tremolo trough is no release
        if held - after >= drop and held - future[i + a0] >= RELEASE_RECOVER_DB:
            knee = i
            while knee + 1 < n and env[knee + 1] >= held - RELEASE_KNEE_DB:
                knee += 1
            if fast_attack and knee - peak < frames(DECAY_GAP):  # the note's decay: go on where it levels off
                j = knee
                while j + frames(0.1) < n and env[j] - env[j + frames(0.1)] > RELEASE_KNEE_DB:
                    j += 1
                # the held level from here on: a hi-hat falling 5 dB / 10 ms onto its noise floor was read as
                # released at 0.13 s, its "held" level the median of its own fall
                i = start = j + 1
                continue
            return Release(seconds=max(0.0, float(times[knee]) - ENVELOPE_SMOOTH / 2), how="released")
        i += 1
    alive = np.flatnonzero(env >= DEAD_DB)  # the running maximum lags the fall by half its width
    if alive[-1] < n - frames(0.05):
        return Release(seconds=float(times[alive[-1]]) - ENVELOPE_SMOOTH / 2, how="died away")
    return Release(seconds=len(audio) / sample_rate, how="held")
