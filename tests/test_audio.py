"""inference.audio, .pitch, .release: reading any clip soundfile reads, one-line errors, trimming, pitch, release."""

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datagen.features import FeatureConfig
import inference.pitch as pitch_module
from datagen.features import leading_silence
from inference.audio import AudioError, prepare, read_audio
from inference.export import held_text
from inference.pitch import Note, Template, _split_notes, detect_note, harmonic_template
from inference.release import detect_release

SR = 44100
FEATURES = FeatureConfig()
TARGET_RMS = 10 ** (-20 / 20)


def tone(hz: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    """(n,) float32 sine."""
    return (amp * np.sin(2 * np.pi * hz * np.arange(int(round(seconds * sr))) / sr)).astype(np.float32)


def logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "inference.audio"]


def write(tmp_path, name: str, audio: np.ndarray, sr: int = SR, **kwargs) -> str:
    path = tmp_path / name
    sf.write(str(path), audio, sr, **kwargs)
    return str(path)


# ---- pitch -----------------------------------------------------------------------------------------------

def test_a3_sine_is_midi_57():
    note = detect_note(tone(220.0, 2.0), sample_rate=SR)
    assert (note.midi, note.pitched, note.n_notes, note.message) == (57, True, 1, None)
    assert abs(note.cents) < 10 and note.hz == pytest.approx(220.0, abs=1.5)


def test_a4_thirty_cents_sharp():
    note = detect_note(tone(440.0 * 2 ** (30 / 1200), 1.0), sample_rate=SR)
    assert note.midi == 69 and note.pitched
    assert note.cents == pytest.approx(30.0, abs=10.0)


@pytest.mark.parametrize("midi, wave", [(24, "saw"), (40, "saw"), (108, "sine")])
def test_range_ends(midi, wave):
    hz = 440.0 * 2 ** ((midi - 69) / 12)  # C1 32.7 Hz, E2 82.4 Hz (bass guitar's lowest), C8 4186 Hz
    t = np.arange(SR) / SR
    audio = 2 * ((t * hz) % 1) - 1 if wave == "saw" else np.sin(2 * np.pi * hz * t)
    note = detect_note((0.5 * audio).astype(np.float32), sample_rate=SR)
    assert (note.midi, note.pitched, note.n_notes) == (midi, True, 1)


def test_tone_in_noise_is_pitched():
    t = np.arange(SR) / SR
    saw = 0.3 * (2 * ((t * 220.0) % 1) - 1)
    noise = np.random.default_rng(1).standard_normal(SR) * saw.std() * 10 ** (-6 / 20)  # 6 dB SNR
    note = detect_note((saw + noise).astype(np.float32), sample_rate=SR)
    assert (note.midi, note.pitched) == (57, True) and abs(note.cents) < 10


def test_white_noise_is_unpitched_midi_60():
    noise = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    note = detect_note(noise, sample_rate=SR)
    assert (note.midi, note.cents, note.hz, note.pitched) == (60, 0.0, None, False)
    assert "unpitched" in note.message and "MIDI 60" in note.message


def test_two_notes_use_the_first(tmp_path):
    c4, g4 = 440.0 * 2 ** (-9 / 12), 440.0 * 2 ** (-2 / 12)
    path = write(tmp_path, "two.wav", np.concatenate([tone(c4, 0.6), tone(g4, 0.6)]))
    target = prepare(path, features=FEATURES)
    note = target.note
    assert note.midi == 60 and note.pitched and note.n_notes >= 2
    assert abs(note.cents) < 10
    assert f"{note.n_notes} notes found: using the first (0.00-" in note.message
    first_end = float(note.message.split("-")[-1].split(" s")[0])
    assert first_end == pytest.approx(0.6, abs=0.1)  # the first note ends where G4 begins
    assert note.message in target.messages


def test_split_notes_pins_the_rule():
    nan = np.nan
    steady = [60.0] * 10
    assert _split_notes(np.array(steady)) == [range(0, 10)]
    # a jump sustained for 3 frames starts a new note; a 2-frame octave glitch does not
    assert _split_notes(np.array([60.0] * 5 + [67.0] * 5)) == [range(0, 5), range(5, 10)]
    assert _split_notes(np.array([60.0] * 5 + [72.0] * 2 + [60.0] * 5)) == [range(0, 12)]
    # a gap of 3 unvoiced frames ends a note (a repeated note counts twice); a 2-frame gap is bridged
    assert _split_notes(np.array(steady + [nan] * 3 + steady)) == [range(0, 10), range(13, 23)]
    assert _split_notes(np.array(steady + [nan] * 2 + steady)) == [range(0, 22)]
    # fewer than 3 voiced frames is no note; under a semitone of drift is the same note
    assert _split_notes(np.array([64.0, 64.0] + [nan] * 3 + steady)) == [range(5, 15)]
    assert _split_notes(np.array([60.0, 60.2, 60.5, 60.8, 60.9, 60.9])) == [range(0, 6)]
    assert _split_notes(np.array([nan] * 5)) == []
    # a glide (here an octave over 40 frames, 0.3 semitone a frame) is one note, however far it goes
    assert _split_notes(np.linspace(48.0, 60.0, 40)) == [range(0, 40)]


def harmonic_tone(midi: float, amplitudes: dict[int, float], seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """(n,) float32, peak 0.3: harmonics h of MIDI `midi` at amplitudes[h], random (seeded) phases."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * SR))) / SR
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    x = sum(a * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) for h, a in amplitudes.items())
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def saw_amplitudes(midi: float) -> dict[int, float]:
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    return {h: 1.0 / h for h in range(1, 40) if h * f0 < 10000}


# the issue's pad: every harmonic of C3 at 0.1, harmonics 6, 9 and 15 at 1 (all multiples of 3: G4's series)
PAD_6_9_15 = {h: (1.0 if h in (6, 9, 15) else 0.1) for h in range(1, 25)}
NO_TEMPLATE = Template(notes=(), explained=0.0, tonal_db=0.0, peak_share=0.0, lowest_harmonic=0)


def test_strongest_partials_6_9_15_are_pitched_at_the_fundamental(monkeypatch):
    pad = harmonic_tone(48, PAD_6_9_15)
    note = detect_note(pad, sample_rate=SR)
    assert (note.midi, note.pitched, note.n_notes, note.message) == (48, True, 1, None) and abs(note.cents) < 5
    template = harmonic_template(pad[::2], sample_rate=SR // 2)
    assert len(template.notes) == 1 and template.lowest_harmonic == 1
    assert template.notes[0] == pytest.approx(440.0 * 2 ** ((48 - 69) / 12), rel=0.003)
    # pYIN alone locks onto the series of 6, 9 and 15: G4 (MIDI 67), a twelfth up; the template corrects it
    monkeypatch.setattr(pitch_module, "harmonic_template", lambda *a, **k: NO_TEMPLATE)
    assert detect_note(pad, sample_rate=SR).midi == 67


def test_noisy_harmonic_pad_is_not_unpitched(monkeypatch):
    pad = harmonic_tone(48, PAD_6_9_15).astype(np.float64)
    noise = np.random.default_rng(3).standard_normal(len(pad)) * pad.std()  # 0 dB SNR
    noisy = (pad + noise).astype(np.float32)
    note = detect_note(noisy, sample_rate=SR)
    assert (note.midi, note.pitched, note.n_notes, note.message) == (48, True, 1, None) and abs(note.cents) < 10
    monkeypatch.setattr(pitch_module, "harmonic_template", lambda *a, **k: NO_TEMPLATE)
    assert not detect_note(noisy, sample_rate=SR).pitched  # pYIN alone: under 30% of the frames voiced


@pytest.mark.parametrize("wave", ["saw", "sine"])
def test_chord_uses_the_lowest_note(tmp_path, wave):
    triad = sum(harmonic_tone(m, saw_amplitudes(m) if wave == "saw" else {1: 1.0}, seed=m).astype(np.float64)
                for m in (60, 64, 67))  # C4 E4 G4
    note = detect_note(triad.astype(np.float32), sample_rate=SR)
    assert (note.midi, note.pitched, note.n_notes) == (60, True, 3) and abs(note.cents) < 5
    assert note.message == "several notes at once: using the lowest (C4 E4 G4)"
    target = prepare(write(tmp_path, "chord.wav", (0.3 * triad / np.abs(triad).max()).astype(np.float32)),
                     features=FEATURES)
    assert target.note.midi == 60 and "several notes at once: using the lowest (C4 E4 G4)" in target.messages


@pytest.mark.parametrize("sub_db, midi", [(-15, 45), (-30, 57)])
def test_quiet_sub_octave_counts_from_minus_20_db(sub_db, midi):
    """A saw on A3 with a saw an octave down: the note is A2 once the sub's partials are within 20 dB of the
    loudest (the waveform repeats at A2's period), A3 when the sub is too quiet to hear."""
    saw = harmonic_tone(57, saw_amplitudes(57), seed=1).astype(np.float64)
    sub = harmonic_tone(45, saw_amplitudes(45), seed=2).astype(np.float64)
    note = detect_note((saw + 10 ** (sub_db / 20) * sub).astype(np.float32), sample_rate=SR)
    assert (note.midi, note.pitched, note.n_notes) == (midi, True, 1)


def test_noise_has_no_template_note():
    noise = np.random.default_rng(0).standard_normal(SR)
    template = harmonic_template(noise, sample_rate=SR)
    assert template.notes == () and template.peak_share < 0.5


# ---- prepare: trim, DC, loudness, fit ----------------------------------------------------------------------

def test_clean_clip_is_kept_whole(tmp_path, caplog):
    path = write(tmp_path, "a3.wav", tone(220.0, 2.0))
    with caplog.at_level(logging.INFO, logger="inference.audio"):
        target = prepare(path, features=FEATURES)
    assert target.audio.shape == (FEATURES.n_samples,) and target.audio.dtype == np.float32
    assert (target.sample_rate, target.duration, target.truncated, target.source) == (SR, 2.0, False, path)
    assert target.note.midi == 57 and (target.key_held, target.held_to_end) == (2.0, True)
    assert target.messages == ("held to the end",) and logged(caplog) == [f"{path}: held to the end"]
    assert np.sqrt(np.mean(target.audio.astype(np.float64) ** 2)) == pytest.approx(TARGET_RMS, rel=0.01)


def test_leading_silence_trimmed_dc_removed_rms_normalised(tmp_path, caplog):
    clip = np.concatenate([np.zeros(SR // 2, np.float32), tone(220.0, 1.0, amp=0.3)]) + 0.25  # DC everywhere
    path = write(tmp_path, "late.wav", clip, subtype="FLOAT")
    with caplog.at_level(logging.INFO, logger="inference.audio"):
        target = prepare(path, features=FEATURES)
    assert target.duration == pytest.approx(1.0, abs=0.05)  # 1.5 s file, 0.5 s of silence trimmed
    kept = int(round(target.duration * SR))
    body = target.audio[:kept].astype(np.float64)
    assert abs(body.mean()) < 1e-3 * TARGET_RMS
    assert np.sqrt(np.mean(body**2)) == pytest.approx(TARGET_RMS, rel=0.01)
    assert not target.audio[kept:].any()  # zero padding up to the model length
    assert len(target.audio) == FEATURES.n_samples and not target.truncated
    assert target.note.midi == 57
    assert any(m.startswith("trimmed 0.49") and "leading silence" in m for m in target.messages)
    assert logged(caplog) == [f"{path}: {m}" for m in target.messages]


def test_trim_keeps_five_ms_before_the_onset():
    audio = np.concatenate([np.zeros(1000), np.ones(500), -np.ones(500)])
    assert leading_silence(audio, sample_rate=SR) == 1000 // 220 * 220 - 220  # 5 ms frames of 220 samples
    assert leading_silence(tone(220.0, 0.1), sample_rate=SR) == 0


def test_no_loudness_normalisation_when_target_is_none(tmp_path):
    path = write(tmp_path, "quiet.wav", tone(220.0, 1.0, amp=0.01), subtype="FLOAT")
    target = prepare(path, features=FeatureConfig(target_rms_db=None))
    body = target.audio[: SR].astype(np.float64)
    assert np.sqrt(np.mean(body**2)) == pytest.approx(0.01 / np.sqrt(2), rel=0.01)


def test_long_clip_is_truncated(tmp_path):
    path = write(tmp_path, "long.wav", tone(220.0, 3.0))
    target = prepare(path, features=FEATURES)
    assert target.truncated and target.duration == pytest.approx(3.0)
    assert len(target.audio) == FEATURES.n_samples
    assert "clip is 3.00 s, the model hears the first 2.00 s" in target.messages


# ---- reading: rates, depths, channels, formats -----------------------------------------------------------

def test_resampling_keeps_the_pitch_and_the_length(tmp_path):
    path = write(tmp_path, "48k.wav", tone(1000.0, 1.0, sr=48000), 48000)
    audio = read_audio(path, sample_rate=SR)
    assert audio.dtype == np.float32 and abs(len(audio) - SR) <= 1
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    peak_hz = np.argmax(spectrum) * SR / len(audio)
    assert peak_hz == pytest.approx(1000.0, abs=5.0)


@pytest.mark.parametrize("name, sr, channels, kwargs, remarks", [
    ("stereo24.wav", 48000, 2, {"subtype": "PCM_24"}, ["mixed 2 channels to mono", "resampled from 48000 Hz"]),
    ("mono.flac", 22050, 1, {}, ["resampled from 22050 Hz to 44100 Hz"]),
    ("vorbis.ogg", 44100, 1, {"format": "OGG", "subtype": "VORBIS"}, []),
    ("layer3.mp3", 44100, 2, {"format": "MP3", "subtype": "MPEG_LAYER_III"}, ["mixed 2 channels to mono"]),
])
def test_formats(tmp_path, name, sr, channels, kwargs, remarks):
    fmt = kwargs.get("format", name.rsplit(".", 1)[1].upper())
    if fmt not in sf.available_formats() or not sf.check_format(fmt, kwargs.get("subtype")):
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}")
    mono = tone(220.0, 1.0, sr=sr)
    path = write(tmp_path, name, np.stack([mono] * channels, axis=1) if channels > 1 else mono, sr, **kwargs)
    target = prepare(path, features=FEATURES)
    assert target.note.midi == 57 and abs(target.note.cents) < 10
    assert target.duration == pytest.approx(1.0, abs=0.06)  # lossy codecs add a few ms of padding
    assert len(target.audio) == FEATURES.n_samples
    for remark in remarks:
        assert any(m.startswith(remark) for m in target.messages), (remark, target.messages)


def test_bounded_read_never_reads_past_max_seconds(tmp_path, monkeypatch, caplog):
    path = write(tmp_path, "hour.wav", tone(220.0, 60.0, sr=8000), 8000, subtype="PCM_16")
    requested = []
    original = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        requested.append(frames)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    with caplog.at_level(logging.INFO, logger="inference.audio"):
        audio = read_audio(path, sample_rate=8000, max_seconds=5.0)
    assert len(audio) == 5 * 8000 and requested == [5 * 8000]
    assert logged(caplog) == [f"{path}: file is 60.00 s long: read the first 5.00 s, the rest is ignored"]
    target = prepare(path, features=FEATURES, max_seconds=5.0)
    assert target.duration == pytest.approx(5.0, abs=0.01) and target.truncated
    assert target.messages[0] == "file is 60.00 s long: read the first 5.00 s, the rest is ignored"
    assert "clip is 5.00 s, the model hears the first 2.00 s" in target.messages


# ---- bad input: one line each ----------------------------------------------------------------------------

def _bad(tmp_path, case: str) -> str:
    if case == "missing":
        return str(tmp_path / "nope.wav")
    if case == "directory":
        return str(tmp_path)
    if case == "text":
        path = tmp_path / "notes.wav"
        path.write_text("this is not audio\n" * 20)
        return str(path)
    if case == "empty":
        path = tmp_path / "empty.wav"
        path.write_bytes(b"")
        return str(path)
    if case == "no frames":
        return write(tmp_path, "zero.wav", np.zeros(0, np.float32))
    if case == "too short":
        return write(tmp_path, "short.wav", tone(220.0, 0.010))
    if case == "short after trim":
        return write(tmp_path, "late.wav", np.concatenate([np.zeros(SR // 2, np.float32), tone(220.0, 0.02)]))
    if case == "silence":
        return write(tmp_path, "silence.wav", np.zeros(SR, np.float32))
    if case == "constant":
        return write(tmp_path, "dc.wav", np.full(SR, 0.25, np.float32), subtype="FLOAT")
    if case == "cancelling channels":
        x = tone(220.0, 1.0)
        return write(tmp_path, "phase.wav", np.stack([x, -x], axis=1), subtype="FLOAT")
    if case in ("nan", "inf"):
        x = tone(220.0, 1.0)
        x[1000] = np.nan if case == "nan" else np.inf
        return write(tmp_path, f"{case}.wav", x, subtype="FLOAT")
    raise AssertionError(case)


@pytest.mark.parametrize("case, expected", [
    ("missing", "nope.wav: no such file"),
    ("directory", ": is a directory, expected an audio file"),
    ("text", "notes.wav: not an audio file soundfile can read ("),
    ("empty", "empty.wav: contains no audio"),
    ("no frames", "zero.wav: contains no audio"),
    ("too short", "short.wav: clip is 0.010 s long, the minimum is 0.046 s (one 2048-sample frame at 44100 Hz)"),
    ("short after trim", "late.wav: clip is 0.026 s long after trimming leading silence, the minimum is 0.046 s"),
    ("silence", "silence.wav: is digital silence"),
    ("constant", "dc.wav: is digital silence (a constant DC offset)"),
    ("cancelling channels", "phase.wav: is digital silence (its channels cancel out when mixed to mono)"),
    ("nan", "nan.wav: contains NaN or infinite samples"),
    ("inf", "inf.wav: contains NaN or infinite samples"),
])
def test_bad_input_is_one_line(tmp_path, case, expected):
    path = _bad(tmp_path, case)
    with pytest.raises(AudioError) as err:
        prepare(path, features=FEATURES)
    message = str(err.value)
    assert expected in message and message.startswith(path) and "\n" not in message
    assert isinstance(err.value, ValueError)


def test_read_audio_minimum_is_configurable(tmp_path):
    path = write(tmp_path, "short.wav", tone(220.0, 0.010))
    assert len(read_audio(path, sample_rate=SR, min_samples=441)) == 441
    with pytest.raises(AudioError, match=r"clip is 0\.010 s long, the minimum is 0\.020 s \(one 882-sample"):
        read_audio(path, sample_rate=SR, min_samples=882)


def test_note_is_a_frozen_record():
    note = Note(midi=60, cents=0.0, hz=None, pitched=False, n_notes=0, message=None)
    with pytest.raises(AttributeError):
        note.midi = 61


# ---- note length: key-held time ---------------------------------------------------------------------------

def envelope_tone(attack: float, held: float, release: float, seconds: float = 2.0, midi: int = 57) -> np.ndarray:
    """(n,) float32 saw with a linear attack (s), held until `held` s, then an exponential release that falls
    60 dB in `release` s."""
    t = np.arange(int(round(seconds * SR))) / SR
    gain = np.minimum(t / attack, 1.0) if attack > 0 else np.ones_like(t)
    gain = gain * np.where(t < held, 1.0, 10 ** (-3 * (t - held) / release))
    return (gain * harmonic_tone(midi, saw_amplitudes(midi), seconds=seconds)).astype(np.float32)


@pytest.mark.parametrize("preset_name", ["saw_pluck", "init"])
def test_key_held_of_renders(tmp_path, registry, init, preset_name):
    """Vital renders held 0.3 / 0.8 / 1.5 s: the pluck (1.3 s decay to sustain 0.3, 0.09 s release, reverb) and the
    init preset (full sustain, 0.09 s release) are read within 50 ms."""
    from datagen.preset import read_vital
    from datagen.render import RenderConfig, Renderer, deterministic

    preset = init if preset_name == "init" else read_vital(
        Path(__file__).parent.parent / "examples" / "presets" / "saw_pluck.vital", registry=registry)
    for held in (0.3, 0.8, 1.5):
        audio = Renderer(RenderConfig(note_length=held, render_length=2.0)).render(deterministic(preset), note=60)
        target = prepare(write(tmp_path, f"{preset_name}_{held}.wav", audio, subtype="FLOAT"), features=FEATURES)
        assert not target.held_to_end and abs(target.key_held - held) <= 0.05, (held, target.key_held)
        assert f"key held {target.key_held:.2f} s" in target.messages


def test_held_past_the_end_of_the_render(tmp_path, init):
    from datagen.render import RenderConfig, Renderer

    audio = Renderer(RenderConfig(note_length=2.5, render_length=2.0)).render(init, note=60)
    target = prepare(write(tmp_path, "held.wav", audio, subtype="FLOAT"), features=FEATURES)
    assert (target.held_to_end, target.key_held) == (True, pytest.approx(2.0, abs=0.01))
    assert "held to the end" in target.messages


@pytest.mark.parametrize("held", [0.3, 0.8, 1.5])
def test_pad_release_with_slow_attack(held):
    pad = envelope_tone(attack=0.25, held=held, release=0.4)
    release = detect_release(pad, sample_rate=SR)
    assert release.how == "released" and abs(release.seconds - held) <= 0.05


def test_long_clip_held_throughout_is_capped_at_the_model_length(tmp_path):
    target = prepare(write(tmp_path, "long.wav", tone(220.0, 3.0)), features=FEATURES)
    assert (target.held_to_end, target.key_held, target.duration) == (True, 2.0, pytest.approx(3.0))


def test_tremolo_is_no_release():
    t = np.arange(2 * SR) / SR
    wobble = 10 ** (6 * np.sin(2 * np.pi * 5 * t) / 20)  # +-6 dB at 5 Hz
    release = detect_release(tone(220.0, 2.0) * wobble, sample_rate=SR)
    assert (release.how, release.seconds) == ("held", 2.0)


def test_a_fast_decay_to_the_noise_floor_died_away():
    """A hi-hat: noise falling 6 dB every 10 ms from its first sample onto a floor ~68 dB down. It died away (where
    it is 50 dB down); it was read as released at 0.12 s, the median "held" level taken over its own fall."""
    t = np.arange(2 * SR) / SR
    noise = np.random.default_rng(0).standard_normal(2 * SR)
    hat = 0.5 * noise * 10 ** (-600 * t / 20) + 2e-4 * np.random.default_rng(1).standard_normal(2 * SR)
    release = detect_release(hat, sample_rate=SR)
    assert release.how == "died away" and release.seconds == pytest.approx(0.085, abs=0.01)


def test_pluck_that_dies_away_is_rendered_held_to_the_end(tmp_path):
    """A pluck decaying 60 dB in 0.6 s with no release seen: it died away where it fell 50 dB under its peak
    (0.5 s), and sounds the same however long the key was held, so candidates are rendered held for the whole
    clip (2 s): a candidate must die away on its own too, not only stop at a release."""
    t = np.arange(2 * SR) / SR
    pluck = (harmonic_tone(57, saw_amplitudes(57)) * 10 ** (-3 * t / 0.6)).astype(np.float32)
    release = detect_release(pluck, sample_rate=SR)
    assert release.how == "died away" and release.seconds == pytest.approx(0.5, abs=0.02)
    target = prepare(write(tmp_path, "pluck.wav", pluck, subtype="FLOAT"), features=FEATURES)
    assert not target.held_to_end and target.died_away == pytest.approx(0.5, abs=0.02)
    assert target.key_held == pytest.approx(2.0, abs=0.01)
    assert (f"died away by {target.died_away:.2f} s (holding the key longer sounds the same: candidates are rendered "
            f"held 2.00 s)" in target.messages)
    assert held_text(target) == f"died away by {target.died_away:.2f} s"
