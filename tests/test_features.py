import numpy as np
import pytest
import torch

from datagen.features import FeatureConfig, fit_length, log_mel, mel_filterbank, normalise_rms, rms


def test_filterbank_equals_librosa():
    import librosa

    c = FeatureConfig()
    ref = librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.f_min, fmax=c.f_max)
    fb = mel_filterbank(c)
    assert fb.shape == (128, 1025) and fb.dtype == np.float32
    np.testing.assert_allclose(fb, ref, atol=1e-7, rtol=1e-4)


def test_shape_and_kinds_agree():
    c = FeatureConfig()
    rng = np.random.default_rng(0)
    audio = rng.standard_normal((3, 88200)).astype(np.float32) * 0.1
    m_np = log_mel(audio, c)
    m_t = log_mel(torch.from_numpy(audio), c)
    assert m_np.shape == (3, 128, 173) == (3, *c.shape) and m_np.dtype == np.float32
    assert isinstance(m_t, torch.Tensor)
    np.testing.assert_allclose(m_np, m_t.numpy(), atol=1e-5)
    np.testing.assert_allclose(log_mel(audio[1], c), m_np[1], atol=1e-4)


def test_loudness_normalised():
    t = np.arange(88200) / 44100
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    np.testing.assert_allclose(log_mel(tone), log_mel(0.01 * tone), atol=1e-3)
    raw = FeatureConfig(target_rms_db=None)
    loud, quiet = log_mel(tone, raw), log_mel(0.01 * tone, raw)
    band = np.unravel_index(np.argmax(loud), loud.shape)
    assert loud[band] - quiet[band] == pytest.approx(np.log(1e4), abs=1e-3)  # 40 dB in power



def test_normalise_rms_rows_kinds_and_silence():
    x = np.stack([3 * np.sin(np.linspace(0, 100, 1000)), np.full(1000, 1e-9), np.zeros(1000)])  # (3, 1000) rows
    for silence in ("clamp", "keep"):
        y = normalise_rms(x.astype(np.float32), rms_db=-20.0, floor=1e-8, silence=silence)
        assert y.dtype == np.float32 and y.shape == x.shape
        assert np.sqrt(np.mean(y[0].astype(np.float64) ** 2)) == pytest.approx(0.1, rel=1e-6)
        t = normalise_rms(torch.from_numpy(x.astype(np.float32)), rms_db=-20.0, floor=1e-8, silence=silence)
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
        np.testing.assert_allclose(t.numpy(), y, rtol=1e-6, atol=1e-12)
    keep = normalise_rms(x, rms_db=-20.0, floor=1e-8, silence="keep")
    assert keep.dtype == np.float64 and keep is not x
    np.testing.assert_array_equal(keep[1:], x[1:])  # below the floor: unchanged
    clamp = normalise_rms(x, rms_db=0.0, floor=1e-8)
    np.testing.assert_allclose(clamp[1], 0.1)  # scaled as if at the floor: RMS 1e-9 -> 1e-9 / 1e-8
    assert not clamp[2].any()  # silence stays silence
    with pytest.raises(ValueError, match="silence"):
        normalise_rms(x, rms_db=0.0, floor=1e-8, silence="mute")

def test_sine_peaks_at_its_mel_band():
    c = FeatureConfig()
    t = np.arange(c.n_samples) / c.sample_rate
    m = log_mel(np.sin(2 * np.pi * 1000 * t).astype(np.float32), c)
    band = int(np.argmax(m[:, 80]))
    fb = mel_filterbank(c)
    centre_hz = np.argmax(fb[band]) * c.sample_rate / c.n_fft
    assert abs(centre_hz - 1000) < 60


def test_fit_length_pads_and_truncates():
    a = np.ones((2, 10), np.float32)
    assert fit_length(a, 4).shape == (2, 4)
    padded = fit_length(a, 12)
    assert padded.shape == (2, 12) and padded[:, 10:].sum() == 0
    assert fit_length(torch.ones(10), 12).shape == (12,)
    # a short clip becomes the full model input
    assert log_mel(np.ones(1000, np.float32) * 0.1).shape == (128, 173)


def test_silence_is_finite():
    m = log_mel(np.zeros(88200, np.float32))
    assert np.all(np.isfinite(m)) and m.max() == pytest.approx(np.log(1e-6), abs=1e-3)


def test_config_json_round_trip_and_validation():
    c = FeatureConfig(n_mels=64)
    assert FeatureConfig.from_json(c.to_json()) == c
    with pytest.raises(ValueError):
        FeatureConfig(f_max=30000)


def test_prepare_trims_leading_silence_and_removes_dc():
    from datagen.features import prepare

    sr = 44100
    t = np.arange(sr // 2) / sr
    note = np.concatenate([np.zeros(4410), 0.5 * np.sin(2 * np.pi * 220 * t)]) + 0.25  # 100 ms silence, DC
    p = prepare(note, sample_rate=sr)
    assert p.start == 4410 // 220 * 220 - 220  # 5 ms before the first 5 ms frame within 50 dB of the loudest
    assert len(p.audio) == len(note) - p.start and abs(p.audio.mean()) < 1e-12
    assert prepare(np.zeros(1000), sample_rate=sr).start == 0  # silence: nothing to find, nothing trimmed


def test_a_stored_mel_is_what_inference_hears_from_the_rows_wav(tmp_path):
    """Train / inference parity: a data set row's mel equals the inference features of that row's audio
    written to a 16-bit WAV (inference.audio.prepare, then log_mel), within float16 precision."""
    import h5py
    import soundfile as sf

    from datagen.generate import GenerateConfig, generate
    from inference.audio import prepare

    from datagen.render import RenderConfig

    config = GenerateConfig(tier=1, n_presets=3, notes=(48, 72), render=RenderConfig(note_length=0.5), seed=5)
    generate(tmp_path / "d.h5", config, show_progress=False)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        audio, mel = f["audio"][:], f["mel"][:].astype(np.float32)
    for k in range(len(audio)):
        wav = tmp_path / f"row{k}.wav"
        sf.write(wav, audio[k], config.features.sample_rate, subtype="PCM_16")  # the stored int16, unchanged
        heard = log_mel(prepare(wav, features=config.features).audio, config.features)
        np.testing.assert_allclose(heard, mel[k], atol=0.02, rtol=2e-3)  # float16: 1/128 at |mel| in 8..16


def test_rms_closed_forms():
    """The one RMS: a full-scale sine's is 1/sqrt(2), a float for one clip, per row (or keepdims) for several,
    accumulated in float64 (a float32 clip of 1e-20 does not underflow to 0)."""
    t = np.arange(44100) / 44100
    sine = np.sin(2 * np.pi * 441 * t)
    assert isinstance(rms(sine), float) and rms(sine) == pytest.approx(2 ** -0.5, rel=1e-9)
    rows = np.stack([sine, 0.5 * sine, np.zeros_like(sine)])
    np.testing.assert_allclose(rms(rows), [2 ** -0.5, 0.5 * 2 ** -0.5, 0.0], rtol=1e-9)
    assert rms(rows, keepdims=True).shape == (3, 1)
    assert rms(np.full(64, 1e-20, np.float32)) == pytest.approx(1e-20, rel=1e-6)
