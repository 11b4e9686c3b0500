"""Audio similarity metrics for the sound-matching benchmark: how far a rendered preset is from its target.

Every metric compares magnitudes or levels only, never waveforms: a synth's oscillator phase is arbitrary, so two
renders of the same preset can differ sample by sample and still sound identical. (Exactly so for windows holding
whole periods; a window shorter than a period, like mss's 64 samples at 440 Hz, still sees some phase through
window leakage.) Inputs are mono float audio, shape (n_samples,), at `sample_rate` Hz (default 44100); each is
first RMS-normalised on its own (`normalise`), because a recording's level says nothing about the preset; then the
shorter is zero-padded to the longer length. Lower is better, 0 means identical, and every metric is symmetric.
Spectra use one framing throughout (`_frames`): periodic Hann window, hop n // 4, no centring, the end zero-padded
so the last samples fall in a frame; magnitudes are unscaled |rfft| (as DDSP's tf.signal.stft).

- `mss` (multi-scale spectral distance, DDSP's loss; unitless): for FFT sizes 64..2048,
  mean |S_a - S_b| + mean |log(S_a + 1e-5) - log(S_b + 1e-5)| of STFT magnitudes, averaged over sizes.
  Several sizes trade time for frequency resolution; the linear term weighs loud partials, the log term quiet ones.
- `lsd` (log-spectral distance; dB): per frame the RMS over bins of the difference of 10 log10(power + 1e-10),
  averaged over frames (n_fft 2048). The usual "how different do the spectra look" number.
- `mfcc_l1` (unitless, MFCC coefficients): mean |difference| of 20 MFCCs (librosa, n_fft 2048, hop 512): the
  timbre envelope on a mel scale, blind to fine pitch detail.
- `loudness_l1` (dB): mean |difference| of frame RMS levels 20 log10(rms + 1e-5), floored at -80 dB (frame 2048,
  hop 512): the amplitude envelope (attack, decay, release), blind to timbre.

`score` computes all four (`METRICS`); `bootstrap_ci` puts a percentile bootstrap interval on a mean over clips.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import get_window

TARGET_RMS = 0.1
SILENCE_RMS = 1e-8


def _mono(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n_samples,), got shape {x.shape}; mix to mono first")
    if x.size == 0:
        raise ValueError("expected audio, got an empty array")
    return x


def normalise(x) -> np.ndarray:
    """A float64 copy of `x` scaled to RMS 0.1; silent input (RMS < 1e-8) comes back unchanged (as a copy)."""
    x = _mono(x).copy()
    rms = np.sqrt(np.mean(x**2))
    return x if rms < SILENCE_RMS else x * (TARGET_RMS / rms)


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Both normalised, the shorter zero-padded at the end to the longer length."""
    a, b = normalise(a), normalise(b)
    n = max(a.size, b.size)
    return np.pad(a, (0, n - a.size)), np.pad(b, (0, n - b.size))


def _frames(x: np.ndarray, size: int, hop: int) -> np.ndarray:
    """(n_frames, size) frames hop samples apart; the end is zero-padded so every sample lies in a frame."""
    n_frames = 1 + max(0, -(-(x.size - size) // hop))
    x = np.pad(x, (0, (n_frames - 1) * hop + size - x.size))
    return np.lib.stride_tricks.sliding_window_view(x, size)[::hop]


def _magnitudes(x: np.ndarray, n_fft: int) -> np.ndarray:
    """(n_frames, n_fft // 2 + 1) STFT magnitudes: periodic Hann window, hop n_fft // 4, unscaled."""
    return np.abs(np.fft.rfft(_frames(x, n_fft, n_fft // 4) * get_window("hann", n_fft), axis=-1))


def multiscale_spectral_distance(a, b, *, fft_sizes=(64, 128, 256, 512, 1024, 2048), sample_rate=44100) -> float:
    a, b = _pair(a, b)
    total = 0.0
    for n_fft in fft_sizes:
        sa, sb = _magnitudes(a, n_fft), _magnitudes(b, n_fft)
        total += np.mean(np.abs(sa - sb)) + np.mean(np.abs(np.log(sa + 1e-5) - np.log(sb + 1e-5)))
    return float(total / len(fft_sizes))


def log_spectral_distance(a, b, *, n_fft=2048, sample_rate=44100) -> float:
    a, b = _pair(a, b)
    da = 10 * np.log10(_magnitudes(a, n_fft) ** 2 + 1e-10)  # (n_frames, n_bins) dB
    db = 10 * np.log10(_magnitudes(b, n_fft) ** 2 + 1e-10)
    return float(np.mean(np.sqrt(np.mean((da - db) ** 2, axis=-1))))


def mfcc_l1(a, b, *, n_mfcc=20, sample_rate=44100) -> float:
    import librosa

    a, b = _pair(a, b)
    ma, mb = (librosa.feature.mfcc(y=x, sr=sample_rate, n_mfcc=n_mfcc, n_fft=2048, hop_length=512) for x in (a, b))
    return float(np.mean(np.abs(ma - mb)))


def loudness_l1(a, b, *, frame=2048, hop=512, sample_rate=44100) -> float:
    a, b = _pair(a, b)
    la, lb = (np.maximum(20 * np.log10(np.sqrt(np.mean(_frames(x, frame, hop) ** 2, axis=-1)) + 1e-5), -80.0)
              for x in (a, b))
    return float(np.mean(np.abs(la - lb)))


METRICS = {
    "mss": multiscale_spectral_distance,
    "lsd": log_spectral_distance,
    "mfcc_l1": mfcc_l1,
    "loudness_l1": loudness_l1,
}


def score(a, b, *, sample_rate=44100) -> dict[str, float]:
    """Every metric of `METRICS` for one (target, render) pair: name -> value (units in the module docstring)."""
    return {name: metric(a, b, sample_rate=sample_rate) for name, metric in METRICS.items()}


def bootstrap_ci(values, *, n=1000, level=0.95, seed=0) -> dict:
    """Mean of `values` (NaNs dropped) and its percentile bootstrap interval: {"mean", "low", "high", "n"}."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    picks = np.random.default_rng(seed).integers(0, v.size, size=(n, v.size))  # n resamples with replacement
    means = v[picks].mean(axis=1)  # (n,)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(v.mean()), "low": float(low), "high": float(high), "n": int(v.size)}
