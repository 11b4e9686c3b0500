"""The one audio feature: a loudness-normalised log-mel spectrogram, shared by data generation, training and
inference. Anything that feeds the network goes through `log_mel`; its `FeatureConfig` is stored in every
data set and checkpoint so a mismatch is detected, never silently tolerated.

torch.stft with a fixed Slaney mel filterbank (the same matrix librosa builds by default, computed here in
numpy so no torchaudio is needed). Inputs may be numpy arrays or torch tensors of shape (..., samples);
the output has the same kind and shape (..., n_mels, frames).

`prepare` is the one clip preparation in front of `log_mel`, shared by generate, ingest, precompute-mels and
inference (through `inference.audio.prepare`): trim leading silence, remove DC. So a stored row's mel is what
inference computes from that row's audio written to a WAV (tests/test_features.py pins it).
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass

import numpy as np

from datagen.console import ConfigError


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 44100  # Hz of the audio handed to log_mel
    duration: float = 2.0  # seconds the model sees: longer input is truncated, shorter zero-padded
    n_fft: int = 2048  # samples per STFT frame (46 ms)
    hop_length: int = 512  # samples between frames (11.6 ms)
    n_mels: int = 128
    f_min: float = 20.0  # Hz
    f_max: float = 16000.0  # Hz
    target_rms_db: float | None = -20.0  # loudness normalisation before the STFT; None keeps the level
    log_floor: float = 1e-6  # added to mel power before the log (-138 dB)

    def __post_init__(self):
        if not (0 < self.f_min < self.f_max <= self.sample_rate / 2):
            raise ConfigError(f"need 0 < f_min < f_max <= sample_rate / 2: {self}")
        if self.n_fft <= 0 or self.hop_length <= 0 or self.n_mels <= 0 or self.duration <= 0:
            raise ConfigError(f"feature sizes must be positive: {self}")

    @property
    def n_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    @property
    def n_frames(self) -> int:
        return 1 + self.n_samples // self.hop_length  # torch.stft with center=True

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_mels, self.n_frames)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "FeatureConfig":
        return cls(**json.loads(text))


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    # Slaney: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log_region = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_region, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))


def _band_edges_hz(config: FeatureConfig) -> np.ndarray:
    """(n_mels + 2,) Hz: the mel bands' corners, evenly spaced in mel; band i spans edges i .. i + 2."""
    return _mel_to_hz(np.linspace(_hz_to_mel(config.f_min), _hz_to_mel(config.f_max), config.n_mels + 2))


def mel_band_hz(config: FeatureConfig) -> np.ndarray:
    """(n_mels,) float64 Hz: each mel band's centre (its filter's peak)."""
    return _band_edges_hz(config)[1:-1]


@functools.lru_cache(maxsize=8)
def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float32 Slaney-normalised triangular filters (equals librosa.filters.mel)."""
    fft_freqs = np.linspace(0, config.sample_rate / 2, config.n_fft // 2 + 1)
    hz_pts = _band_edges_hz(config)
    widths = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    fb = np.maximum(0.0, np.minimum(lower, upper))
    fb *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]  # equal area per filter
    return fb.astype(np.float32)


# Leading-silence trim: a 5 ms RMS envelope, everything before the first frame within 50 dB of the loudest
# frame is silence; 5 ms before the onset are kept so the attack is not cut.
TRIM_FRAME_SECONDS = 0.005
TRIM_THRESHOLD_DB = -50.0
TRIM_PREROLL_SECONDS = 0.005


def leading_silence(audio: np.ndarray, *, sample_rate: int) -> int:
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


@dataclass(frozen=True)
class Prepared:
    audio: np.ndarray  # (n - start,) float64: trimmed, zero mean over what is kept
    start: int  # samples of leading silence removed


def prepare(audio: np.ndarray, *, sample_rate: int) -> Prepared:
    """A clip made ready for `log_mel`: leading silence trimmed (blind to DC, so it comes first), then DC
    removed. audio: (n,) float at sample_rate Hz. Level and length are `log_mel`'s job (it normalises the
    RMS and fits the length), so they stay out of here."""
    x = np.asarray(audio, dtype=np.float64)
    start = leading_silence(x, sample_rate=sample_rate) if x.any() else 0
    x = x[start:]
    return Prepared(audio=x - x.mean(), start=start)


def clip_mels(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(rows, n_mels, n_frames) float32: `log_mel` of each prepared row of (rows, n) audio at config's rate;
    how data sets compute their mels."""
    audio = np.atleast_2d(audio)
    return np.stack([log_mel(prepare(row, sample_rate=config.sample_rate).audio.astype(np.float32), config)
                     for row in audio])


def fit_length(audio, n_samples: int):
    """Truncate or zero-pad the last axis to n_samples (numpy or torch)."""
    have = audio.shape[-1]
    if have >= n_samples:
        return audio[..., :n_samples]
    pad = n_samples - have
    if isinstance(audio, np.ndarray):
        return np.pad(audio, [(0, 0)] * (audio.ndim - 1) + [(0, pad)])
    import torch.nn.functional as F

    return F.pad(audio, (0, pad))


def rms(audio: np.ndarray, *, keepdims: bool = False) -> np.ndarray | float:
    """Root mean square of numpy `audio` along its last axis, accumulated in float64: a float for one clip
    (1-D), else an array (..., ) or (..., 1) with `keepdims`. The one RMS: level checks, loudness normalising
    (`normalise_rms`), the data set's rejection rule and the search's silence test all read it."""
    r = np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=-1, keepdims=keepdims))
    return float(r) if r.ndim == 0 else r


def normalise_rms(audio, *, rms_db: float, floor: float, silence: str = "clamp"):
    """`audio` scaled along its last axis to an RMS of `rms_db` dB re full scale (-20: RMS 0.1). The one
    loudness normaliser: `log_mel`, inference's clip (`inference.audio.prepare`) and every distance of
    `datagen.distances` go through it.

    audio: (..., samples) float, numpy or torch; returns a new array of the same kind, shape and dtype, each row
    x * (10 ** (rms_db / 20) / rms). numpy: the RMS and that scale in float64, the product rounded once to
    audio's dtype; torch: all in the tensor's dtype, on its device. A row whose RMS is below `floor` (linear)
    is silent: silence="clamp" scales it as if its RMS were `floor` (silence stays near silence),
    silence="keep" returns it unchanged.
    """
    if silence not in ("clamp", "keep"):
        raise ValueError(f"silence must be 'clamp' or 'keep', got {silence!r}")
    gain = 10 ** (rms_db / 20)  # linear RMS wanted
    if isinstance(audio, np.ndarray):
        level = rms(audio, keepdims=True)  # (..., 1) float64
        level = np.maximum(level, floor) if silence == "clamp" else np.where(level < floor, gain, level)  # keep: x1
        return (audio * (gain / level)).astype(audio.dtype, copy=False)
    import torch

    level = audio.pow(2).mean(dim=-1, keepdim=True).sqrt()  # (..., 1)
    level = level.clamp_min(floor) if silence == "clamp" else torch.where(level < floor, gain, level)
    return audio * (gain / level)


def log_mel(audio, config: FeatureConfig = FeatureConfig()):
    """Loudness-normalised log-mel spectrogram.

    audio: (..., samples) float at config.sample_rate, numpy or torch. Returns (..., n_mels, n_frames)
    float32 natural-log mel power, of the same kind as the input. The clip is fitted to config.duration
    first, so every output has config.shape.
    """
    import torch

    as_numpy = isinstance(audio, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)) if as_numpy else audio.float()
    x = fit_length(x, config.n_samples)
    if config.target_rms_db is not None:
        x = normalise_rms(x, rms_db=config.target_rms_db, floor=1e-8)  # silence stays (near) silence
    lead = x.shape[:-1]
    x = x.reshape(-1, x.shape[-1])
    window = torch.hann_window(config.n_fft, device=x.device)
    spec = torch.stft(x, config.n_fft, hop_length=config.hop_length, window=window, center=True,
                      pad_mode="reflect", return_complex=True)
    power = spec.real.pow(2) + spec.imag.pow(2)  # (batch, n_fft // 2 + 1, frames)
    fb = torch.from_numpy(mel_filterbank(config)).to(x.device)
    mel = torch.log(torch.matmul(fb, power) + config.log_floor)
    mel = mel.reshape(*lead, config.n_mels, mel.shape[-1])
    return mel.numpy() if as_numpy else mel
