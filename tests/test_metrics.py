from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import lfilter, sawtooth

from inference.metrics import (
    METRICS,
    bootstrap_ci,
    log_spectral_distance,
    loudness_l1,
    multiscale_spectral_distance,
    normalise,
    paired_ratio_ci,
    score,
)

SR = 44100
T = np.arange(SR // 2) / SR  # 0.5 s


def sine(freq, n=T.size, phase=0.0):
    return np.sin(2 * np.pi * freq * np.arange(n) / SR + phase)


def pluck(tau=0.3, pole=0.0):
    """A decaying 220 Hz sawtooth, optionally darkened by a one-pole low-pass (gain 1 at DC)."""
    return lfilter([1 - pole], [1, -pole], sawtooth(2 * np.pi * 220 * T)) * np.exp(-T / tau)


def test_metric_names():
    assert list(METRICS) == ["mss", "lsd", "mfcc_l1", "loudness_l1"]


def test_normalise():
    x = 3 * sine(440)
    y = normalise(x)
    assert y.dtype == np.float64 and y is not x
    assert np.sqrt(np.mean(y**2)) == pytest.approx(0.1, rel=1e-12)
    np.testing.assert_allclose(y[1:] / x[1:], y[1] / x[1])  # a pure scaling
    silent = np.full(100, 1e-9)
    np.testing.assert_array_equal(normalise(silent), silent)
    assert normalise([0.5, -0.5]).tolist() == pytest.approx([0.1, -0.1])  # array-likes accepted


def test_identical_is_zero():
    x = pluck()
    assert all(v < 1e-12 for v in score(x, x).values()), score(x, x)


def test_level_invariance():
    x = pluck()
    values = score(x, 3 * x)
    assert all(v < 1e-9 for v in values.values()), values


def test_different_lengths_symmetric():
    # Each input is normalised on its own, then the shorter is zero-padded; every metric is symmetric.
    x, y = pluck(), pluck(tau=0.2)[: T.size // 3]
    assert score(x, y) == score(y, x)
    assert all(v > 1 for v in score(x, y).values())  # the silent tail counts


def test_mss_phase_insensitive():
    # 1378.125 Hz = 2 * 44100 / 64 Hz: a whole number of periods in every window (64..2048 samples), and 22016
    # samples = 43 * 512 leave no padded frame, so every STFT magnitude is exactly phase-independent (periodic
    # Hann: a bin-centred sine leaks only into its two neighbours). A quarter period later must score ~0.
    # (An off-bin 440 Hz sine scores 0.34 vs 0.75 for a fifth: 64-sample windows see under one period and
    # window leakage depends on phase, so the log term of the short scales is not phase-blind.)
    n, freq = 22016, 2 * SR / 64
    quarter = multiscale_spectral_distance(sine(freq, n), sine(freq, n, phase=np.pi / 2))
    fifth = multiscale_spectral_distance(sine(freq, n), sine(1.5 * freq, n))
    assert fifth > 0.5
    assert quarter < 1e-6 * fifth


def test_ordering():
    # A slightly darker pluck with a slightly faster decay is closer, on every metric, than steady white noise.
    # (A 440 Hz sine vs 445 / 880 Hz orders mss, lsd and mfcc_l1 but not loudness_l1: steady sines all have
    # flat normalised loudness, so that metric sees only noise there.)
    ref, near = pluck(), pluck(tau=0.25, pole=0.3)
    far = np.random.default_rng(0).standard_normal(T.size)
    close, distant = score(ref, near), score(ref, far)
    for name in METRICS:
        assert close[name] < 0.5 * distant[name], (name, close[name], distant[name])


def test_loudness_closed_form():
    # a: a sine of constant amplitude; b: the same sine with its second half at half amplitude. 430.66 Hz =
    # 20 * 44100 / 2048 Hz puts exactly 5 periods in each 512-sample quarter-frame, so every frame's RMS is exact.
    # After normalisation to RMS 0.1: a's frames all have mean square 0.01; b's mean square over the whole clip
    # is (m + m / 4) / 2 = 0.01, so m = 0.016 (first half) and m / 4 = 0.004 (second half).
    # 88064 samples = 172 quarters, the edge after quarter 86; frame j (hop = 1 quarter) covers quarters j..j+3,
    # q = clip(86 - j, 0, 4) of them loud: mean square (q * 0.016 + (4 - q) * 0.004) / 4, for j = 0..168.
    # Ignoring the 1e-5 offset: 83 frames each side of the edge differ by 10 log10(1.6) and 10 log10(2.5) dB (sum
    # 10 log10(4)); the 3 edge frames (q = 3, 2, 1) by 10 log10(1.3), 0 and 10 log10(1 / 0.7) dB.
    n = 2048 * 43
    a = sine(20 * SR / 2048, n)
    b = a * np.where(np.arange(n) < n // 2, 1.0, 0.5)
    db = lambda ms: 20 * math.log10(math.sqrt(ms) + 1e-5)  # noqa: E731
    qs = [min(max(86 - j, 0), 4) for j in range(169)]
    expected = sum(abs(db(0.01) - db((q * 0.016 + (4 - q) * 0.004) / 4)) for q in qs) / 169
    got = loudness_l1(a, b)
    assert got == pytest.approx(expected, abs=1e-9)
    by_hand = 10 * (83 * math.log10(4) + math.log10(1.3) - math.log10(0.7)) / 169  # 2.9728 dB
    assert got == pytest.approx(by_hand, abs=1e-3)


def test_lsd_closed_form():
    # Two bin-centred sines, bins 40 and 80 of 2048 (861.3 and 1722.7 Hz); 22528 samples = 11 * 2048 give
    # exact RMS and no padded frame. Normalised amplitude A = 0.1 * sqrt(2); with a periodic Hann window a
    # bin-centred sine has |X| = A N / 4 in its bin, A N / 8 in each neighbour, and 0 (to ~1e-13) elsewhere,
    # so 10 log10(P + 1e-10) is -100 dB there. Each frame differs in 6 of 1025 bins: twice by D0, four times
    # by D1, where D = 10 log10(|X|^2 + 1e-10) + 100, and every frame is alike.
    n_fft, n = 2048, 2048 * 11
    amp = 0.1 * math.sqrt(2)
    d0 = 10 * math.log10((amp * n_fft / 4) ** 2 + 1e-10) + 100
    d1 = 10 * math.log10((amp * n_fft / 8) ** 2 + 1e-10) + 100
    expected = math.sqrt((2 * d0**2 + 4 * d1**2) / (n_fft // 2 + 1))
    got = log_spectral_distance(sine(40 * SR / n_fft, n), sine(80 * SR / n_fft, n, phase=1.0))
    assert got == pytest.approx(expected, rel=1e-9)
    assert got == pytest.approx(10.19196, abs=1e-5)


def test_golden_values():
    # Computed once with this module's definitions: a change of definition (framing, window, floors) fails here.
    a = pluck()
    b = np.random.default_rng(0).standard_normal(T.size) * np.exp(-T / 0.1)
    golden = {"mss": GOLDEN_MSS, "lsd": GOLDEN_LSD, "mfcc_l1": GOLDEN_MFCC, "loudness_l1": GOLDEN_LOUDNESS}
    got = score(a, b, sample_rate=SR)
    for name, value in golden.items():
        assert got[name] == pytest.approx(value, rel=1e-6), (name, got[name])


GOLDEN_MSS = 3.0102517
GOLDEN_LSD = 17.067356  # dB
GOLDEN_MFCC = 15.261335
GOLDEN_LOUDNESS = 10.543796  # dB


def test_mfcc_depends_on_sample_rate():
    x, y = pluck(), pluck(pole=0.5)
    assert METRICS["mfcc_l1"](x, y, sample_rate=22050) != METRICS["mfcc_l1"](x, y, sample_rate=44100)


def test_bootstrap_ci():
    ci = bootstrap_ci([1, 2, 3, 4])
    assert ci["mean"] == 2.5 and ci["n"] == 4
    assert 1 <= ci["low"] < 2.5 < ci["high"] <= 4
    assert bootstrap_ci([1, 2, 3, 4]) == ci  # same seed, same interval
    assert bootstrap_ci([1, 2, 3, 4], seed=1) != ci
    narrow = bootstrap_ci([1, 2, 3, 4], level=0.5)
    assert ci["low"] < narrow["low"] < narrow["high"] < ci["high"]
    assert bootstrap_ci([1, float("nan"), 2, 3, 4]) == ci  # NaN dropped, n counts the rest


def test_bootstrap_ci_edge_cases():
    empty = bootstrap_ci([float("nan")])
    assert empty["n"] == 0 and all(math.isnan(empty[k]) for k in ("mean", "low", "high"))
    assert bootstrap_ci([])["n"] == 0
    assert bootstrap_ci([0.7]) == {"mean": 0.7, "low": 0.7, "high": 0.7, "n": 1}


def test_paired_ratio_ci():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0]
    # a = b / 2 on every clip: every resample has ratio 0.5
    assert paired_ratio_ci(a, b) == {"ratio": 0.5, "low": 0.5, "high": 0.5, "n": 4, "lower": 4}
    r = paired_ratio_ci([1.0, 3.0, 2.0], [2.0, 2.0, 2.0])
    assert r["ratio"] == 1.0 and r["lower"] == 1 and r["low"] < 1.0 < r["high"]
    assert paired_ratio_ci([1.0, 3.0, 2.0], [2.0, 2.0, 2.0]) == r  # seeded
    with pytest.raises(ValueError, match="equal non-zero lengths"):
        paired_ratio_ci([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="equal non-zero lengths"):
        paired_ratio_ci([], [])


@pytest.mark.parametrize("name", list(METRICS))
@pytest.mark.parametrize("bad", [np.zeros((2, 100)), np.zeros(0)], ids=["2-D", "empty"])
def test_bad_inputs(name, bad):
    with pytest.raises(ValueError, match="mono audio|empty"):
        METRICS[name](bad, np.zeros(100))
    with pytest.raises(ValueError):
        METRICS[name](np.zeros(100), bad)


# ---- the search's distance (datagen.distances.SearchDistance; never a benchmark metric) ----------------------

def _attack_pair():
    """A 220 + 440 Hz tone with a 2 ms and a 30 ms linear attack, both decaying with a 0.3 s time constant."""
    sr = 44100
    t = np.arange(sr) / sr
    tone = np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 440 * t)
    return [(tone * np.minimum(t / a, 1.0) * np.exp(-t / 0.3)).astype(np.float32) for a in (0.002, 0.03)]


def test_search_distance_is_the_mean_of_its_four_terms():
    from datagen.distances import (LevelEnvelopeDistance, MelSTFTDistance, SearchDistance, ShortSTFTDistance,
                                   SpectrumShapeDistance)

    x, y = _attack_pair()
    d = SearchDistance(sample_rate=44100)
    terms = (MelSTFTDistance(sample_rate=44100)(x, y), ShortSTFTDistance()(x, y), SpectrumShapeDistance()(x, y),
             LevelEnvelopeDistance()(x, y))
    assert d(x, y) == pytest.approx(sum(terms) / 4, rel=1e-6)
    golden = (0.34255, 0.23615, 0.0061122, 0.074911)
    assert terms == tuple(pytest.approx(g, abs=1e-4) for g in golden)
    assert d(x, x) == 0.0 and d(3 * x, y) == pytest.approx(d(x, y), rel=1e-5)  # level-blind
    assert d(np.roll(x, 2205), x) > d(y, x)  # 50 ms late is further than a slower attack


def _tone(seconds=1.0, sr=44100):
    t = np.arange(int(seconds * sr)) / sr
    return t, np.sin(2 * np.pi * 220 * t).astype(np.float32)


def test_the_deep_terms_hear_what_the_70_db_floor_cannot():
    from datagen.distances import LevelEnvelopeDistance, MelSTFTDistance, ShortSTFTDistance, SpectrumShapeDistance

    t, tone = _tone()
    mel, short, shape, level = (MelSTFTDistance(sample_rate=44100), ShortSTFTDistance(), SpectrumShapeDistance(),
                                LevelEnvelopeDistance())
    # A note that stops against one that goes on 80 dB down: the target's silence is floored 100 dB down, so each
    # frame of the tail costs ln(10), over about half the frames.
    stops = (tone * (t < 0.5)).astype(np.float32)
    lingers = (tone * np.where(t < 0.5, 1.0, 1e-4)).astype(np.float32)
    assert mel(lingers, stops) < 1e-3 and short(lingers, stops) < 1e-3
    assert level(lingers, stops) == pytest.approx(0.5 * np.log(10), rel=0.05)
    # White noise 60 dB under a tone: the valleys the mel term floors.
    noise = np.random.default_rng(0).standard_normal(tone.size).astype(np.float32)
    hissy = (tone + 1e-3 * noise).astype(np.float32)
    assert mel(hissy, tone) < 0.01 and shape(hissy, tone) > 1.0
    # ... but a render cleaner than a target's own hiss (70 dB down) costs little: the floor is the target's noise.
    recorded = (tone + 10 ** (-70 / 20) * noise).astype(np.float32)
    assert shape(tone, recorded) < 0.25 * shape(recorded, tone)
    assert level(tone, recorded) < 1e-3 and level(stops, stops) == 0.0


@pytest.mark.parametrize("name", ["SpectrumShapeDistance", "LevelEnvelopeDistance"])
def test_the_deep_terms_are_level_blind_and_fit_the_input_to_the_target(name):
    import datagen.distances as d

    x, y = _attack_pair()
    dist = getattr(d, name)()
    assert dist(x, x) == 0.0 and dist(0.01 * x, y) == pytest.approx(dist(x, y), rel=1e-6)
    assert dist(np.concatenate([x, x]), y) == pytest.approx(dist(x, y), rel=1e-9)  # the input cut at the target's end
