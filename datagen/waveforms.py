"""Procedural waveforms: the frames (single cycles of 2048 samples) of the procedural wavetable catalog.

DSP only: numbers in, numbers out. How frames become Vital's wavetable JSON, and the catalog a model chooses
from, live in `datagen/wavetables.py` (`procedural_catalog` wraps `procedural_frames`).

Frames are bit-stable: every procedural frame is quantised to a 2**-20 grid, so last-ulp differences between
numpy builds cannot change a byte of the catalog (its fingerprint is pinned by tests/test_wavetables.py), and
pseudo-random phases come from sha256, not from an RNG whose stream may change between numpy versions.
"""

from __future__ import annotations

import hashlib
import math
from typing import Callable

import numpy as np

N_SAMPLES = 2048  # samples per frame (one waveform cycle), as Vital stores it
N_HARMONICS = 512  # procedural frames are band-limited to harmonics 1..512 (Nyquist of a frame is 1024)
_OVERSAMPLE = 16  # time-domain shapes are evaluated on 16 x 2048 points, then band-limited
_QUANTUM = 2.0**-20  # sample grid: exact in float32 for |x| <= 1, far above float64 rounding noise

# Frames are built as complex Fourier coefficients c[k] of harmonics k = 1..K (K <= 512):
# x(t) = sum_k 2 Re(c[k] exp(2 pi i k t)), t in [0, 1) cycles. A sine series a[k] sin(2 pi k t) is c = -i a / 2.


def _from_coeffs(c: np.ndarray) -> np.ndarray:
    """(K,) complex coefficients of harmonics 1..K -> (2048,) float64 waveform."""
    spectrum = np.zeros(N_SAMPLES // 2 + 1, dtype=np.complex128)
    k = min(len(c), N_HARMONICS)
    spectrum[1:k + 1] = np.asarray(c[:k]) * N_SAMPLES  # irfft divides by N
    return np.fft.irfft(spectrum, n=N_SAMPLES)


def _sines(amps: np.ndarray) -> np.ndarray:
    """Sine series: amps (K,) for harmonics 1..K -> (2048,) waveform."""
    return _from_coeffs(-0.5j * np.asarray(amps, dtype=np.float64))


def _shape(fn: Callable[[np.ndarray], np.ndarray], *, oversample: int = _OVERSAMPLE) -> np.ndarray:
    """A time-domain shape fn(t), t (oversample * 2048,) in [0, 1) -> (2048,) waveform keeping harmonics
    1..512. 16x oversampling keeps aliasing of discontinuous shapes below ~1/16000 of the fundamental."""
    n = N_SAMPLES * oversample
    spectrum = np.fft.rfft(fn(np.arange(n) / n))
    return _from_coeffs(spectrum[1:N_HARMONICS + 1] / n)


def _finish(x: np.ndarray) -> np.ndarray:
    """Remove DC, scale to peak 1, quantise to the 2**-20 grid: (2048,) float32."""
    x = x - x.mean()
    peak = np.abs(x).max()
    if not peak > 1e-9:
        raise ValueError("silent frame")
    return (np.round(x / peak / _QUANTUM) * _QUANTUM).astype(np.float32)


def _k(n: int = N_HARMONICS) -> np.ndarray:
    return np.arange(1, n + 1, dtype=np.float64)  # harmonic numbers 1..n


def _saw(n: int = N_HARMONICS) -> np.ndarray:
    k = _k(n)
    return _sines(np.where(k % 2 == 0, 1.0, -1.0) / k)  # falling ramp, jump at mid-cycle (like Vital's Init)


def _square(n: int = N_HARMONICS) -> np.ndarray:
    k = _k(n)
    return _sines(np.where(k % 2 == 1, 1.0 / k, 0.0))


def _triangle() -> np.ndarray:
    k = _k()
    return _sines(np.where(k % 2 == 1, (-1.0) ** ((k - 1) // 2) / k**2, 0.0))


def _sine() -> np.ndarray:
    return _sines(np.array([1.0]))


def _pulse(width: float) -> np.ndarray:
    """High for the first `width` of the cycle: c[k] = (1 - exp(-2 pi i k w)) / (2 pi i k)."""
    k = _k()
    return _from_coeffs((1.0 - np.exp(-2j * np.pi * k * width)) / (2j * np.pi * k))


def _phases(seed: int, n: int = N_HARMONICS) -> np.ndarray:
    """n pseudo-random phases in [0, 2 pi), from sha256 (stable across numpy versions, unlike an RNG)."""
    raw = b"".join(hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(math.ceil(n / 8)))
    return np.frombuffer(raw, dtype="<u4")[:n] / 2.0**32 * 2 * np.pi


def _noise(amps: np.ndarray, seed: int) -> np.ndarray:
    return _from_coeffs(0.5 * amps * np.exp(1j * _phases(seed, len(amps))))


def _init_saw() -> np.ndarray:
    """Vital's Init table, bit for bit: a naive falling ramp 1 - 2 i / 2047 (float32), rolled half a cycle."""
    i = np.arange(N_SAMPLES, dtype=np.float32)
    return np.roll(np.float32(1) - i * (np.float32(2) / np.float32(N_SAMPLES - 1)), N_SAMPLES // 2)


def _formant_frame(formants: tuple[tuple[float, float, float], ...], f0: float) -> np.ndarray:
    """Saw-like glottal source (1/k) shaped by resonances (frequency Hz, bandwidth Hz, gain) at pitch f0 Hz."""
    f = _k() * f0
    env = 0.01 + sum(g / (1.0 + ((f - fc) / (bw / 2)) ** 2) for fc, bw, g in formants)
    return _sines(env / _k())


# Vowel formants of an adult voice: (F Hz, bandwidth Hz, gain) for F1..F3.
_VOWELS = {
    "a": ((730, 90, 1.0), (1090, 110, 0.5), (2440, 160, 0.25)),
    "e": ((530, 80, 1.0), (1840, 110, 0.5), (2480, 160, 0.25)),
    "i": ((270, 70, 1.0), (2290, 120, 0.4), (3010, 180, 0.3)),
    "o": ((570, 80, 1.0), (840, 100, 0.6), (2410, 160, 0.15)),
    "u": ((300, 70, 1.0), (870, 100, 0.4), (2240, 160, 0.1)),
}


def _fm(carrier: int, ratio: int, index: float) -> np.ndarray:
    """Phase modulation sin(2 pi c t + index sin(2 pi r t)); integer c, r keep it periodic per cycle."""
    return _shape(lambda t: np.sin(2 * np.pi * carrier * t + index * np.sin(2 * np.pi * ratio * t)))


def _feedback_fm(beta: float) -> np.ndarray:
    """One-operator feedback FM: y = sin(2 pi t + beta y), solved by bisection (unique root for beta < 1)."""
    def fn(t: np.ndarray) -> np.ndarray:
        lo, hi = -np.ones_like(t), np.ones_like(t)
        for _ in range(40):  # f(y) = y - sin(2 pi t + beta y) increases in y: bisect to 2**-40
            mid = 0.5 * (lo + hi)
            up = mid - np.sin(2 * np.pi * t + beta * mid) > 0
            hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
        return 0.5 * (lo + hi)
    return _shape(fn, oversample=4)  # smooth for beta < 1: its harmonics decay exponentially


def _fold(u: np.ndarray) -> np.ndarray:
    """Triangle wavefolder: identity on [-1, 1], reflecting beyond."""
    return 1.0 - 4.0 * np.abs((u + 1.0) / 4.0 - np.floor((u + 1.0) / 4.0) - 0.5)


def _phase_distortion(knee: float) -> Callable[[np.ndarray], np.ndarray]:
    """Casio CZ style: the phase runs to 1/2 by t = knee, then on to 1; cosine read out (knee 1/2 = sine)."""
    def fn(t: np.ndarray) -> np.ndarray:
        phase = np.where(t < knee, 0.5 * t / knee, 0.5 + 0.5 * (t - knee) / (1.0 - knee))
        return -np.cos(2 * np.pi * phase)
    return fn


def _geometric(lo: float, hi: float, n: int) -> list[float]:
    return [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]


def _tables() -> list[tuple[str, list[np.ndarray]]]:
    """(name, frames) for every procedural table; frames are (2048,) float64 before `_finish`.
    Append new tables at the end: a table's index is a class label in datasets and checkpoints."""
    k = _k()
    sync_ratios = _geometric(1.0, 8.0, 8)
    t: list[tuple[str, list[np.ndarray]]] = [
        ("basic/sine", [_sine()]),
        ("basic/triangle", [_triangle()]),
        ("basic/saw", [_saw()]),
        ("basic/square", [_square()]),
        ("basic/morph", [_sine(), _triangle(), _saw(), _square()]),
        ("pulse/width sweep", [_pulse(w) for w in (0.5, 0.4, 0.3, 0.22, 0.15, 0.1, 0.06, 0.03)]),
        ("pulse/25%", [_pulse(0.25)]),
        ("pulse/12.5%", [_pulse(0.125)]),
        ("harmonics/saw build", [_saw(n) for n in (1, 2, 3, 5, 8, 16, 64, 512)]),
        ("harmonics/square build", [_square(n) for n in (1, 3, 5, 9, 17, 33, 129, 511)]),
        ("harmonics/equal build", [_sines(np.ones(n)) for n in (1, 2, 4, 8, 16, 32)]),
        ("harmonics/resonant sweep", [
            _sines(1.0 / k / np.sqrt((1 - (k / hc) ** 2) ** 2 + (k / (4.0 * hc)) ** 2))
            for hc in _geometric(2.0, 64.0, 6)]),
        ("additive/organ", [_sines(np.array([1.0, 1.0, 1.0, 0.5, 0, 0.3, 0, 0.5]))]),
        ("additive/even", [_sines(np.where((k == 1) | (k % 2 == 0), 1.0 / k, 0.0))]),
        ("additive/octaves", [_sines(np.where(np.log2(k) % 1 == 0, 1.0 / np.sqrt(k), 0.0)[:128])]),
        ("additive/soft saw", [_sines(1.0 / k**2)]),
        # Schroeder phases pi k^2 / K keep the crest factor low (in-phase harmonics would make one spike)
        ("additive/bright", [_from_coeffs(-0.5j / np.sqrt(k) * np.exp(1j * np.pi * k**2 / N_HARMONICS))]),
        ("formant/vowels", [_formant_frame(_VOWELS[v], 110.0) for v in "aeiou"]),
        ("formant/vowels high", [_formant_frame(_VOWELS[v], 220.0) for v in "aeiou"]),
        ("formant/a", [_formant_frame(_VOWELS["a"], 110.0)]),
        ("formant/i", [_formant_frame(_VOWELS["i"], 110.0)]),
        ("formant/u", [_formant_frame(_VOWELS["u"], 110.0)]),
    ]
    fm_indices = (0.0, 0.5, 1.0, 2.0, 4.0, 7.0)
    t += [(f"fm/ratio {r}", [_fm(1, r, i) for i in fm_indices]) for r in (1, 2, 3, 4, 7)]
    t += [
        ("fm/carrier 3 ratio 2", [_fm(3, 2, i) for i in (1.0, 1.5, 2.0, 3.0, 4.5, 7.0)]),  # index 0 = 3rd harmonic
        ("fm/feedback", [_feedback_fm(b) for b in (0.0, 0.2, 0.4, 0.6, 0.8, 0.95)]),
        ("sync/saw", [_shape(lambda t, r=r: 1.0 - 2.0 * ((r * t) % 1.0)) for r in sync_ratios]),
        ("sync/square", [_shape(lambda t, r=r: np.where((r * t) % 1.0 < 0.5, 1.0, -1.0)) for r in sync_ratios]),
        ("sync/sine", [_shape(lambda t, r=r: np.sin(2 * np.pi * r * t)) for r in sync_ratios]),
        ("sync/windowed sine", [_shape(lambda t, r=r: np.sin(2 * np.pi * r * t) * (1.0 - t)) for r in sync_ratios]),
        ("noise/white", [_noise(np.ones(N_HARMONICS), seed=1)]),
        ("noise/pink", [_noise(1.0 / np.sqrt(k), seed=2)]),
        ("noise/sine to noise", [
            _finish(_sine()) * (1 - m) + _finish(_noise(np.ones(N_HARMONICS), seed=3)) * m
            for m in (0.0, 0.25, 0.5, 0.75, 1.0)]),
        ("crush/sine bits", [
            _shape(lambda t, b=b: np.round(np.sin(2 * np.pi * t) * 2 ** (b - 1)) / 2 ** (b - 1))
            for b in (8, 6, 5, 4, 3, 2, 1)]),
        ("crush/saw downsample", [
            _shape(lambda t, m=m: 1.0 - 2.0 * np.floor(t * m) / m) for m in (256, 64, 32, 16, 8, 4)]),
        ("shape/fold", [_shape(lambda t, g=g: _fold(g * np.sin(2 * np.pi * t))) for g in (1, 1.5, 2, 3, 5, 8)]),
        ("shape/drive", [
            _shape(lambda t, g=g: np.tanh(g * np.sin(2 * np.pi * t))) for g in (0.5, 1, 2, 4, 8, 20)]),
        ("shape/phase distortion", [_shape(_phase_distortion(d)) for d in (0.5, 0.3, 0.2, 0.1, 0.05, 0.02)]),
        ("shape/half-rectified sine", [_shape(lambda t: np.maximum(np.sin(2 * np.pi * t), 0.0))]),
        ("shape/rectified sine", [_shape(lambda t: np.abs(np.sin(np.pi * t)))]),
    ]
    return t


def procedural_frames() -> list[tuple[str, list[np.ndarray]]]:
    """(name, frames) of every procedural table, in catalog order, each frame (2048,) float32: Vital's own
    Init saw first (bit for bit, so real presets' Init tables are found by `wavetables.lookup`), then basic
    shapes, pulses, harmonic sweeps, additive and formant tables, FM, sync, noise/bitcrush and waveshaping.
    Every frame except Init's is band-limited to 512 harmonics, DC-free, at peak 1 and on the 2**-20 grid."""
    return [("init", [_init_saw()])] + [(name, [_finish(f) for f in frames]) for name, frames in _tables()]
