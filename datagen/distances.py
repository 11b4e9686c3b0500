"""Every distance between two sounds, in one module: auraloss-style classes, `forward(input, target) -> float`
(calling the object calls it), lower is closer, 0 for identical clips. input, target: mono float audio,
shape (samples,). Each clip is first RMS-normalised on its own (`datagen.features.normalise_rms`): a
recording's level says nothing about the preset, so a gain difference costs nothing.

Who uses which:

- training (`training evaluate`, `training.audio.spectral_distance`): `LinearSTFTDistance`, auraloss'
  multi-resolution STFT loss as it comes (spectral convergence + log magnitude, linear frequency).
- refinement (`inference.objective.Objective`, what every search minimises): `SearchDistance`, the mean of
  `MelSTFTDistance` (the same loss on a 64-band mel scale with a power floor: the spectrum), `ShortSTFTDistance`
  (linear frequency at 3-12 ms windows: the attack, decay and release), and two terms heard 100 dB down:
  `SpectrumShapeDistance` (the average spectrum) and `LevelEnvelopeDistance` (the level of each frame).
- the benchmark (`inference.metrics`, research/benchmarks.md): `MultiScaleSpectralDistance` (mss),
  `LogSpectralDistance` (lsd), `MFCCDistance` (mfcc_l1) and `LoudnessDistance` (loudness_l1), the `Yardstick`s.
  They hear ~130 dB down, so both clips must be made alike first: the benchmark passes each render, at the
  target's recording level, through the 16-bit WAV and `prepare` its target went through (`inference.clips.as_heard`).

The search objective and the benchmark's yardstick are different ON PURPOSE: a search is graded by measures it
did not optimise, so a method that only games its own loss shows as such (research/benchmarks.md, "Objective and
metric disagree"). Never score the benchmark with the search's distances, nor search on a `Yardstick`.

Lengths: the auraloss distances fit input to the target's length (truncated or zero-padded), then normalise
both; the yardsticks are symmetric: each clip normalised, then the shorter zero-padded to the longer.

torch, auraloss (the `train` extra) and librosa are imported on first use.
"""

from __future__ import annotations

import numpy as np

from datagen.features import fit_length, normalise_rms


class Distance:
    """forward(input, target) -> float; calling the object calls forward."""

    def forward(self, input, target) -> float:
        raise NotImplementedError

    def __call__(self, input, target) -> float:
        return self.forward(input, target)


# ---- auraloss multi-resolution STFT: training and refinement ------------------------------------------------

class _MultiResolutionSTFT(Distance):
    """auraloss MultiResolutionSTFTLoss (hop a quarter of each FFT size, window = FFT size) between the two clips,
    input fitted to the target's length, both converted to `dtype` and RMS-normalised (`normalise_rms` with
    `level`), then to float32 torch (1, 1, samples). Computed without autograd."""

    def __init__(self, *, fft_sizes, dtype, level: dict, **stft):
        from auraloss.freq import MultiResolutionSTFTLoss

        self.fft_sizes = tuple(fft_sizes)
        self._dtype = dtype
        self._level = level
        self._loss = MultiResolutionSTFTLoss(fft_sizes=list(self.fft_sizes), hop_sizes=[n // 4 for n in self.fft_sizes],
                                             win_lengths=list(self.fft_sizes), **stft)

    def _signal(self, x: np.ndarray):
        import torch

        return torch.from_numpy(normalise_rms(x, **self._level)).float()[None, None]  # (1, 1, samples)

    def forward(self, input, target) -> float:
        import torch

        target = np.asarray(target, self._dtype)
        input = fit_length(np.asarray(input, self._dtype), target.shape[-1])
        with torch.no_grad():
            return float(self._loss(self._signal(input), self._signal(target)))


class LinearSTFTDistance(_MultiResolutionSTFT):
    """Training's spectral distance: auraloss' MR-STFT with its defaults (linear frequency, power floor 1e-8),
    FFT 512 / 1024 / 2048. Clips normalised in float64 to RMS 1 (0 dB); a silent one (RMS < 1e-8) is scaled as
    if at 1e-8. A silent input scores about 1 + the log-magnitude gap."""

    FFT_SIZES = (512, 1024, 2048)  # samples; hop = size // 4, window = size

    def __init__(self, *, fft_sizes=FFT_SIZES):
        super().__init__(fft_sizes=fft_sizes, dtype=np.float64, level=dict(rms_db=0.0, floor=1e-8))


# The level both search distances normalise clips to: RMS 0.1 (-20 dB) in float32; a clip under RMS 1e-8 is
# silence and left as it is (inference.objective fails such a render).
SEARCH_LEVEL = dict(rms_db=-20.0, floor=1e-8, silence="keep")


class MelSTFTDistance(_MultiResolutionSTFT):
    """Refinement's objective: auraloss' MR-STFT on a mel scale, FFT 1024 / 2048 / 4096 (23-93 ms at 44.1 kHz),
    no perceptual weighting, power floor `POWER_FLOOR`. Clips in float32, normalised to RMS 0.1 (-20 dB); a
    silent one (RMS < 1e-8) is left as it is."""

    FFT_SIZES = (1024, 2048, 4096)  # samples; hop = size // 4, window = size
    MEL_BINS = 64  # the most mel bands whose filters are all non-empty at FFT 1024 (128 leaves some empty: NaN)
    # Power floor of every STFT bin (auraloss clamps |X|^2 at eps), both signals at RMS 0.1: |X| >= 0.01, about
    # 70 dB under a full-scale partial. With auraloss's default (1e-8) the log-magnitude term compared the silence
    # after a pluck's release bin by bin: a 16-bit WAV's quantisation noise against a render's exact zeros cost
    # the clip's own preset a loss of ~1.0 (research/benchmarks.md, "objective floor"); at 1e-4 it scores 0.02
    # and every other candidate keeps its ranking.
    POWER_FLOOR = 1e-4

    def __init__(self, *, sample_rate: int, fft_sizes=FFT_SIZES, n_mels: int = MEL_BINS, eps: float = POWER_FLOOR):
        super().__init__(fft_sizes=fft_sizes, dtype=np.float32, level=SEARCH_LEVEL,
                         scale="mel", n_bins=n_mels, sample_rate=sample_rate, perceptual_weighting=False, eps=eps)


class ShortSTFTDistance(_MultiResolutionSTFT):
    """auraloss' MR-STFT on a linear frequency scale at short windows, FFT 128 / 256 / 512 (3-12 ms at 44.1 kHz):
    the attack, the decay and the release, which `MelSTFTDistance`'s 23-93 ms windows blur. Level (`SEARCH_LEVEL`)
    and power floor as `MelSTFTDistance`'s (float32, RMS 0.1, |X|^2 >= 1e-4)."""

    FFT_SIZES = (128, 256, 512)  # samples; hop = size // 4, window = size

    def __init__(self, *, fft_sizes=FFT_SIZES, eps: float = MelSTFTDistance.POWER_FLOOR):
        super().__init__(fft_sizes=fft_sizes, dtype=np.float32, level=SEARCH_LEVEL, eps=eps)


class _DeepSearchTerm(Distance):
    """A search term heard far under `MelSTFTDistance.POWER_FLOOR`, in numpy: input fitted to the target's length,
    both in float64 normalised to `SEARCH_LEVEL`, then `_distance(a, b)` (a: input, b: target). Its floor sits
    `DEPTH` under the target's loudest value or at the target's own quietest (its noise: a 16-bit recording's
    quantisation), whichever is higher, so a render cleaner than the recording costs nothing."""

    def forward(self, input, target) -> float:
        target = np.asarray(target, np.float32)
        input = fit_length(np.asarray(input, np.float32), target.shape[-1])
        a, b = (normalise_rms(np.asarray(x, np.float64), **SEARCH_LEVEL) for x in (input, target))
        return float(self._distance(a, b))

    def _distance(self, a: np.ndarray, b: np.ndarray) -> float:
        raise NotImplementedError

    @staticmethod
    def _log_l1(a: np.ndarray, b: np.ndarray, *, floor: float) -> float:
        """Mean |ln max(a, floor) - ln max(b, floor)|."""
        return np.mean(np.abs(np.log(np.maximum(a, floor)) - np.log(np.maximum(b, floor))))


class SpectrumShapeDistance(_DeepSearchTerm):
    """The long-term average spectrum (power averaged over frames, FFT 2048, hop 512, periodic Hann) compared in log
    magnitude (ln |X|, as auraloss's log term) down to 100 dB under the target's loudest bin or the target's
    5th-percentile bin (its noise), whichever is higher. Power averaged over time is ruled by the loud frames, so a
    near-silent tail cannot outweigh the sound, while the floor hears the valleys between partials, a filter's
    slope and added noise far under the mel term's 70 dB floor, where mss's log term still charges
    (research/benchmarks.md, "Where mss comes from")."""

    FFT_SIZE = 2048  # samples; hop FFT_SIZE // 4 (`_magnitudes`)
    DEPTH = 1e-10  # power: 100 dB

    def _distance(self, a, b):
        pa, pb = (np.mean(_magnitudes(x, self.FFT_SIZE) ** 2, axis=0) for x in (a, b))  # (1025,) mean power
        floor = max(pb.max() * self.DEPTH, np.percentile(pb, 5), 1e-30)
        return 0.5 * self._log_l1(pa, pb, floor=floor)  # 0.5 ln power = ln |X|


class LevelEnvelopeDistance(_DeepSearchTerm):
    """The level envelope (frame RMS, 512 samples, hop 256) compared in log amplitude down to 100 dB under the
    target's loudest frame or its quietest frame (its noise), whichever is higher: one number per frame, so it is
    smooth where a bin-level deep floor is noisy (the "heard" objectives, research/benchmarks.md), and a tail 40 dB
    too loud, which mss charges and the 70 dB floor cannot hear (a hi-hat's), costs the search too."""

    FRAME, HOP = 512, 256  # samples
    DEPTH = 1e-5  # amplitude: 100 dB

    def _distance(self, a, b):
        la, lb = (np.sqrt(np.mean(_frames(x, self.FRAME, self.HOP) ** 2, axis=-1)) for x in (a, b))  # (frames,)
        return self._log_l1(la, lb, floor=max(lb.max() * self.DEPTH, lb.min(), 1e-30))


class SearchDistance(Distance):
    """Refinement's objective: the mean of four terms, `MelSTFTDistance` (the spectrum, FFT 1024-4096 on 64 mel
    bands), `ShortSTFTDistance` (the envelope, FFT 128-512), `SpectrumShapeDistance` (the average spectrum heard
    100 dB down) and `LevelEnvelopeDistance` (the level envelope heard 100 dB down). Why: searching on the mel
    distance alone over-optimised it (a lower objective, not a closer sound); on 10 tuning clips the short windows
    made proposals+portfolio at 200 renders 0.750x closer by mss (loudness envelope 0.569x). The first two floor
    power 70 dB down, and more than half of what mss still charged lay under that (research/benchmarks.md, "Where
    mss comes from"); the two deep terms hear it without letting a near-silent tail outweigh the sound (the
    twelfth session's A/B: "The objective hears 100 dB down")."""

    def __init__(self, *, sample_rate: int, envelope_fft_sizes=ShortSTFTDistance.FFT_SIZES):
        self.spectrum = MelSTFTDistance(sample_rate=sample_rate)
        self.envelope = ShortSTFTDistance(fft_sizes=envelope_fft_sizes)
        self.shape = SpectrumShapeDistance()
        self.level = LevelEnvelopeDistance()

    def forward(self, input, target) -> float:
        return 0.25 * (self.spectrum(input, target) + self.envelope(input, target) + self.shape(input, target)
                       + self.level(input, target))


# ---- the benchmark's yardstick -------------------------------------------------------------------------------

class Yardstick(Distance):
    """A benchmark metric. Magnitudes or levels only, never waveforms: a synth's oscillator phase is arbitrary, so
    two renders of one preset can differ sample by sample and still sound identical. (Exactly so for windows
    holding whole periods; a window shorter than a period, like mss's 64 samples at 440 Hz, still sees some phase
    through window leakage.) Both clips in float64, each normalised on its own (`normalise`), the shorter then
    zero-padded to the longer length; symmetric. Spectra use one framing throughout (`_frames`): periodic Hann
    window, hop n // 4, no centring, the end zero-padded so the last samples fall in a frame; magnitudes are
    unscaled |rfft| (as DDSP's tf.signal.stft)."""

    RMS_DB = -20.0  # RMS 0.1
    SILENCE_RMS = 1e-8  # below: left as it is

    @classmethod
    def normalise(cls, x) -> np.ndarray:
        """A float64 copy of `x` (samples,) scaled to RMS 0.1; silent input (RMS < 1e-8) comes back unchanged
        (as a copy). ValueError unless x is non-empty mono audio."""
        return normalise_rms(_mono(x), rms_db=cls.RMS_DB, floor=cls.SILENCE_RMS, silence="keep")

    def forward(self, input, target) -> float:
        a, b = self.normalise(input), self.normalise(target)
        n = max(a.size, b.size)
        return float(self._distance(np.pad(a, (0, n - a.size)), np.pad(b, (0, n - b.size))))

    def _distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """a, b: normalised (n,) float64 of equal length."""
        raise NotImplementedError


class MultiScaleSpectralDistance(Yardstick):
    """mss (DDSP's multi-scale spectral loss; unitless): for each FFT size, mean |S_a - S_b| + mean |log(S_a + 1e-5)
    - log(S_b + 1e-5)| of STFT magnitudes, averaged over sizes. Several sizes trade time for frequency resolution;
    the linear term weighs loud partials, the log term quiet ones."""

    FFT_SIZES = (64, 128, 256, 512, 1024, 2048)

    def __init__(self, *, fft_sizes=FFT_SIZES):
        self.fft_sizes = tuple(fft_sizes)

    def _distance(self, a, b):
        total = 0.0
        for n_fft in self.fft_sizes:
            sa, sb = _magnitudes(a, n_fft), _magnitudes(b, n_fft)
            total += np.mean(np.abs(sa - sb)) + np.mean(np.abs(np.log(sa + 1e-5) - np.log(sb + 1e-5)))
        return total / len(self.fft_sizes)


class LogSpectralDistance(Yardstick):
    """lsd (log-spectral distance; dB): per frame the RMS over bins of the difference of 10 log10(power + 1e-10),
    averaged over frames. The usual "how different do the spectra look" number."""

    def __init__(self, *, n_fft: int = 2048):
        self.n_fft = n_fft

    def _distance(self, a, b):
        da = 10 * np.log10(_magnitudes(a, self.n_fft) ** 2 + 1e-10)  # (n_frames, n_bins) dB
        db = 10 * np.log10(_magnitudes(b, self.n_fft) ** 2 + 1e-10)
        return np.mean(np.sqrt(np.mean((da - db) ** 2, axis=-1)))


class MFCCDistance(Yardstick):
    """mfcc_l1 (unitless, MFCC coefficients): mean |difference| of `n_mfcc` MFCCs (librosa, n_fft 2048, hop 512):
    the timbre envelope on a mel scale, blind to fine pitch detail."""

    def __init__(self, *, n_mfcc: int = 20, sample_rate: int = 44100):
        self.n_mfcc, self.sample_rate = n_mfcc, sample_rate

    def _distance(self, a, b):
        import librosa

        ma, mb = (librosa.feature.mfcc(y=x, sr=self.sample_rate, n_mfcc=self.n_mfcc, n_fft=2048, hop_length=512)
                  for x in (a, b))
        return np.mean(np.abs(ma - mb))


class LoudnessDistance(Yardstick):
    """loudness_l1 (dB): mean |difference| of frame RMS levels 20 log10(rms + 1e-5), floored at -80 dB: the
    amplitude envelope (attack, decay, release), blind to timbre."""

    def __init__(self, *, frame: int = 2048, hop: int = 512):
        self.frame, self.hop = frame, hop

    def _distance(self, a, b):
        la, lb = (np.maximum(20 * np.log10(np.sqrt(np.mean(_frames(x, self.frame, self.hop) ** 2, axis=-1)) + 1e-5),
                             -80.0) for x in (a, b))
        return np.mean(np.abs(la - lb))


def _mono(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n_samples,), got shape {x.shape}; mix to mono first")
    if x.size == 0:
        raise ValueError("expected audio, got an empty array")
    return x


def _frames(x: np.ndarray, size: int, hop: int) -> np.ndarray:
    """(n_frames, size) frames hop samples apart; the end is zero-padded so every sample lies in a frame."""
    n_frames = 1 + max(0, -(-(x.size - size) // hop))
    x = np.pad(x, (0, (n_frames - 1) * hop + size - x.size))
    return np.lib.stride_tricks.sliding_window_view(x, size)[::hop]


def _magnitudes(x: np.ndarray, n_fft: int) -> np.ndarray:
    """(n_frames, n_fft // 2 + 1) STFT magnitudes: periodic Hann window, hop n_fft // 4, unscaled."""
    from scipy.signal import get_window

    return np.abs(np.fft.rfft(_frames(x, n_fft, n_fft // 4) * get_window("hann", n_fft), axis=-1))
