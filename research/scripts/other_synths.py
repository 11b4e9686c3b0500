"""Sounds no Vital preset made: eight one-note clips from small numpy synths (a plucked string, an FM bell, a
drawbar organ, a filtered supersaw, an acid bass, a pitch-dropping sine bass, a PWM pad, a hard-synced lead), to
check that a change holds beyond Vital's own presets. Nothing here is tuned on them.

    python research/scripts/other_synths.py [-o data/other_synths]
    python -m inference benchmark -i data/other_synths --methods ... -o ...

Each clip: 44.1 kHz mono 16-bit WAV, 2 s, the key held 1.5 s (plucks and bells die away sooner), peak -3 dBFS.
A pure function of the code (a fixed seed for the noise): the files are the same on every machine.
"""

import argparse
from pathlib import Path

import numpy as np

from inference.pitch import midi_to_hz as hz

SR = 44100
SECONDS, HELD = 2.0, 1.5
T = np.arange(int(SR * SECONDS)) / SR  # (samples,) seconds: every clip's time axis


def adsr(attack: float, decay: float, sustain: float, release: float) -> np.ndarray:
    """(samples,) a linear-attack, exponential decay / release envelope with the key held HELD seconds."""
    env = np.where(T < attack, T / max(attack, 1e-4), sustain + (1 - sustain) * np.exp(-(T - attack) / decay))
    at_release = env[min(int(HELD * SR), len(env) - 1)]
    return np.where(T < HELD, env, at_release * np.exp(-(T - HELD) / release))


def saw(phase: np.ndarray) -> np.ndarray:
    return 2 * (phase % 1.0) - 1


def phase_of(freq) -> np.ndarray:
    """The running phase (cycles) of a constant or (samples,) frequency in Hz."""
    f = np.broadcast_to(np.asarray(freq, np.float64), T.shape)
    return np.cumsum(f) / SR


def one_pole(x: np.ndarray, cutoff: np.ndarray) -> np.ndarray:
    """A one-pole lowpass with a (samples,) cutoff in Hz."""
    a = np.exp(-2 * np.pi * np.asarray(cutoff) / SR) * np.ones_like(x)
    y, state = np.empty_like(x), 0.0
    for i in range(len(x)):
        state = (1 - a[i]) * x[i] + a[i] * state
        y[i] = state
    return y


def svf_lowpass(x: np.ndarray, cutoff: np.ndarray, q: float) -> np.ndarray:
    """A Chamberlin state-variable lowpass with a (samples,) cutoff in Hz and resonance 1 / q."""
    f = 2 * np.sin(np.pi * np.minimum(cutoff, SR / 6) / SR) * np.ones_like(x)
    low = band = 0.0
    y = np.empty_like(x)
    for i in range(len(x)):
        low += f[i] * band
        high = x[i] - low - q * band
        band += f[i] * high
        y[i] = low
    return y


def pluck(midi: int, rng) -> np.ndarray:
    """Karplus-Strong: a noise burst through a delay line with a two-point average."""
    period = int(round(SR / hz(midi)))
    buf = rng.uniform(-1, 1, period)
    out = np.empty(T.size)
    for i in range(len(out)):
        out[i] = buf[i % period]
        buf[i % period] = 0.996 * 0.5 * (buf[i % period] + buf[(i + 1) % period])
    return out


def fm_bell(midi: int, rng) -> np.ndarray:
    index = 6 * np.exp(-T / 0.4)
    mod = np.sin(2 * np.pi * 3.5 * phase_of(hz(midi)))
    return np.sin(2 * np.pi * phase_of(hz(midi)) + index * mod) * np.exp(-T / 0.7)


def organ(midi: int, rng) -> np.ndarray:
    drawbars = {0.5: 0.6, 1: 1.0, 2: 0.7, 3: 0.5, 4: 0.3, 6: 0.2, 8: 0.15}
    x = sum(level * np.sin(2 * np.pi * phase_of(hz(midi) * ratio)) for ratio, level in drawbars.items())
    return x * adsr(0.01, 0.05, 1.0, 0.08)


def supersaw(midi: int, rng) -> np.ndarray:
    detune = np.linspace(-0.3, 0.3, 7)  # semitones
    x = sum(saw(phase_of(hz(midi) * 2 ** (d / 12)) + rng.uniform()) for d in detune) / 7
    env = adsr(0.05, 0.6, 0.6, 0.3)
    return one_pole(x, 400 + 5000 * env) * env


def acid(midi: int, rng) -> np.ndarray:
    x = np.sign(np.sin(2 * np.pi * phase_of(hz(midi))))
    return svf_lowpass(x, 150 + 3000 * np.exp(-T / 0.15), q=0.15) * adsr(0.005, 0.3, 0.7, 0.05)


def sine_drop(midi: int, rng) -> np.ndarray:
    freq = hz(midi) * (1 + 3 * np.exp(-T / 0.03))
    return np.tanh(2 * np.sin(2 * np.pi * phase_of(freq))) * adsr(0.002, 0.5, 0.3, 0.2)


def pwm_pad(midi: int, rng) -> np.ndarray:
    width = 0.5 + 0.35 * np.sin(2 * np.pi * 3.0 * T)
    x = np.where((phase_of(hz(midi)) % 1.0) < width, 1.0, -1.0)
    return one_pole(x, 2500) * adsr(0.4, 1.0, 0.8, 0.4)


def sync_lead(midi: int, rng) -> np.ndarray:
    master = phase_of(hz(midi))
    ratio = 1.5 + 2.0 * np.exp(-T / 0.3)  # the slave's frequency sweeps down to 1.5x the master's
    x = saw((master % 1.0) * ratio)
    return one_pole(x, 6000) * adsr(0.01, 0.2, 0.8, 0.1)


SOUNDS = {"pluck_a2": (pluck, 45), "fm_bell_c5": (fm_bell, 72), "organ_c4": (organ, 60),
          "supersaw_e3": (supersaw, 52), "acid_c2": (acid, 36), "sine_drop_a1": (sine_drop, 33),
          "pwm_pad_g3": (pwm_pad, 55), "sync_lead_d4": (sync_lead, 62)}


def main():
    import soundfile as sf

    parser = argparse.ArgumentParser()
    parser.add_argument("-o", "--output", type=Path, default=Path("data/other_synths"))
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    for name, (make, midi) in SOUNDS.items():
        x = make(midi, np.random.default_rng(0))
        x = x - x.mean()
        x = 10 ** (-3 / 20) * x / np.max(np.abs(x))
        sf.write(args.output / f"{name}.wav", x.astype(np.float32), SR, subtype="PCM_16")
        print(args.output / f"{name}.wav")


if __name__ == "__main__":
    main()
