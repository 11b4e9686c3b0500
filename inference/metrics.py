"""The sound-matching benchmark's audio metrics: how far a rendered preset is from its target, and bootstrap
intervals on their means.

The metrics are the yardstick classes of `datagen.distances` (definitions, units, normalisation and padding
there; also why they are not the search objective): `mss`, `lsd`, `mfcc_l1`, `loudness_l1` in `METRICS`, each
`metric(a, b, *, sample_rate=44100) -> float` on mono (n_samples,) clips. `score` computes all four;
`bootstrap_ci` puts a percentile bootstrap interval on a mean over clips; `paired_ratio_ci` on the ratio of two
means over the same clips.
"""

from __future__ import annotations

import numpy as np

from datagen.distances import LogSpectralDistance, LoudnessDistance, MFCCDistance, MultiScaleSpectralDistance, Yardstick

normalise = Yardstick.normalise  # (n,) -> float64 copy at RMS 0.1, silence (RMS < 1e-8) left as it is


def multiscale_spectral_distance(a, b, *, fft_sizes=MultiScaleSpectralDistance.FFT_SIZES, sample_rate=44100) -> float:
    return MultiScaleSpectralDistance(fft_sizes=fft_sizes)(a, b)


def log_spectral_distance(a, b, *, n_fft=2048, sample_rate=44100) -> float:
    return LogSpectralDistance(n_fft=n_fft)(a, b)


def mfcc_l1(a, b, *, n_mfcc=20, sample_rate=44100) -> float:
    return MFCCDistance(n_mfcc=n_mfcc, sample_rate=sample_rate)(a, b)


def loudness_l1(a, b, *, frame=2048, hop=512, sample_rate=44100) -> float:
    return LoudnessDistance(frame=frame, hop=hop)(a, b)


METRICS = {
    "mss": multiscale_spectral_distance,
    "lsd": log_spectral_distance,
    "mfcc_l1": mfcc_l1,
    "loudness_l1": loudness_l1,
}


def score(a, b, *, sample_rate=44100) -> dict[str, float]:
    """Every metric of `METRICS` for one (target, render) pair: name -> value (units: `datagen.distances`)."""
    return {name: metric(a, b, sample_rate=sample_rate) for name, metric in METRICS.items()}


def bootstrap_ci(values, *, n=1000, level=0.95, seed=0) -> dict:
    """Mean of `values` (NaNs dropped) and its percentile bootstrap interval: {"mean", "low", "high", "n"}."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    means = v[_resamples(v.size, n=n, seed=seed)].mean(axis=1)  # (n,)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(v.mean()), "low": float(low), "high": float(high), "n": int(v.size)}


def paired_ratio_ci(a, b, *, n=2000, level=0.95, seed=0) -> dict:
    """mean(a) / mean(b) over paired clips (a[i], b[i]: one clip scored two ways) and its percentile bootstrap
    interval, clips resampled together: {"ratio", "low", "high", "n", "lower": clips where a < b}."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired values need equal non-zero lengths, got {a.size} and {b.size}")
    picks = _resamples(a.size, n=n, seed=seed)
    ratios = a[picks].mean(axis=1) / b[picks].mean(axis=1)  # (n,)
    low, high = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return {"ratio": float(a.mean() / b.mean()), "low": float(low), "high": float(high), "n": int(a.size),
            "lower": int((a < b).sum())}


def _resamples(size: int, *, n: int, seed: int) -> np.ndarray:
    """(n, size) indices: n bootstrap resamples, with replacement, of `size` items."""
    return np.random.default_rng(seed).integers(0, size, size=(n, size))
