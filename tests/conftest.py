from __future__ import annotations

import json

import numpy as np
import pytest

from datagen.preset import Modulation, Preset, find_presets, init_preset, shared_presets_dir
from datagen.registry import load_registry


@pytest.fixture(scope="session")
def registry():
    return load_registry()


@pytest.fixture(scope="session")
def init(registry):
    return init_preset(registry)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A checkpoint trained for two batches on 8 tier-3 presets with the default (2 s) features (inference and
    benchmark tests share it). Its data set is `tiny_checkpoint.parent.parent / "tiny.h5"`."""
    from datagen.generate import GenerateConfig, generate
    from training.train import TrainConfig, train

    root = tmp_path_factory.mktemp("inference")
    data = root / "tiny.h5"
    generate(data, GenerateConfig(tier=3, n_presets=8, notes=(60,)), workers=2, show_progress=False)
    train(TrainConfig(data=(str(data),), output=str(root / "run"), epochs=1, batch_size=4, max_batches_per_epoch=2),
          show_progress=False)
    return root / "run" / "latest.pt"


def shared_presets() -> list:
    folder = shared_presets_dir()
    return find_presets(folder) if folder.is_dir() else []


def require_shared_presets() -> list:
    paths = shared_presets()
    if not paths:
        pytest.skip(f"no real presets at {shared_presets_dir()} (set VITAL_PRESETS or check out shared/ beside the repo)")
    return paths


def perturbed(registry, init: Preset, seed: int) -> Preset:
    """A random but sane preset: ~40 continuous and ~12 categorical values moved, a few modulations."""
    rng = np.random.default_rng(seed)
    cont, cat = dict(init.continuous), dict(init.categorical)
    # global controls (volume, polyphony, ...) and the amp envelope are left alone so the note stays audible
    movable = [p for p in registry.params if p.module not in ("global", "env_1")]
    for p in rng.choice([p for p in movable if not p.discrete], size=40, replace=False):
        cont[p.name] = float(rng.random())
    for p in rng.choice([p for p in movable if p.discrete], size=12, replace=False):
        cat[p.name] = int(rng.integers(p.n_classes))
    cat["osc_1_on"], cat["osc_1_destination"] = 1, 0  # keep one source on and routed, so renders are audible
    cont["osc_1_level"] = max(cont["osc_1_level"], 0.5)
    mods = tuple(
        Modulation(source=str(rng.choice(registry.sources)), destination=str(rng.choice(registry.destinations)),
                   amount=float(rng.uniform(-1, 1)), bipolar=bool(rng.integers(2)),
                   power=float(rng.uniform(-10, 10)), stereo=bool(rng.integers(2)))
        for _ in range(int(rng.integers(0, 6)))
    )
    return Preset(continuous=cont, categorical=cat, modulations=mods, meta={"preset_name": f"perturbed {seed}"})


def write_json(path, doc) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def copy_without_audio(src, dst):
    """A copy of the HDF5 data set `src` at `dst` without its audio dataset (as `generate --no-audio` writes it);
    returns dst."""
    import h5py

    with h5py.File(src, "r") as f, h5py.File(dst, "w") as out:
        for name in f:
            if name != "audio":
                f.copy(f[name], out)
        out.attrs.update(f.attrs)
    return dst


def log_spectrum(audio: np.ndarray, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """Phase-insensitive comparison view: log10 magnitude STFT, (frames, n_fft // 2 + 1)."""
    audio = np.asarray(audio, dtype=np.float64)
    frames = np.lib.stride_tricks.sliding_window_view(audio, n_fft)[::hop] * np.hanning(n_fft)
    return np.log10(np.abs(np.fft.rfft(frames, axis=-1)) + 1e-6)


def spectral_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |difference| of long-term average log10 spectra: insensitive to phase and to frame alignment.
    Two random-phase renders of one preset: < 0.01; one semitone apart: ~1.2."""
    avg = lambda x: np.log10(np.mean(10 ** log_spectrum(x), axis=0))  # noqa: E731
    return float(np.mean(np.abs(avg(a) - avg(b))))
