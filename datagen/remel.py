"""`datagen precompute-mels`: recompute a data set's `mel` dataset with another FeatureConfig, from its stored
int16 audio (a set generated with --no-audio cannot be recomputed).

In place (default): the new mels go into a scratch dataset (`mel.new`), then, with `complete` cleared for the
instant of the swap, the old `mel` is removed, the new one renamed to `mel` and `feature_config` updated. An
interruption before the swap leaves the file as it was (the scratch dataset is replaced by the next run);
one during the swap leaves it marked incomplete. HDF5 does not give the old mels' space back: the file keeps
that size until `h5repack`, or write a compact copy with `output=`.

Copy (`output=`): every row dataset is streamed block by block into a new file through
`datagen.dataset.write_h5` (atomic: `<output>.partial`, renamed when complete), the mels recomputed; other
datasets (e.g. `importance_continuous`) are copied afterwards. A merged (virtual) set becomes a real one.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from datagen.dataset import DatasetError, from_pcm
from datagen.features import FeatureConfig

BLOCK = 64  # rows featurised per step (64 x 2 s of audio: 22 MB as float32)
SCRATCH = "mel.new"


def config_for(attrs: dict, **changes) -> FeatureConfig:
    """The data set's FeatureConfig with `changes` (None values ignored); ValueError for an invalid one."""
    current = FeatureConfig.from_json(attrs["feature_config"])
    return dataclasses.replace(current, **{k: v for k, v in changes.items() if v is not None})


def _mels(audio_ds, start: int, stop: int, config: FeatureConfig) -> np.ndarray:
    from datagen.features import clip_mels

    return clip_mels(from_pcm(audio_ds[start:stop]), config).astype(np.float16)


def recompute_mels(path: Path, config: FeatureConfig, *, output: Path | None = None,
                   show_progress: bool = False) -> dict:
    """Recompute `mel` with `config`, in place or into `output` (which must not exist). Returns: output, rows,
    old_shape and shape ((n_mels, n_frames) per row), in_place, seconds. DatasetError for a set without audio,
    a sample-rate mismatch, an existing output or an unwritable file."""
    import h5py
    from tqdm import tqdm

    from datagen.summary import open_checked

    path = Path(path)
    attrs = open_checked(path, need=("mel", "midi_note"))
    with h5py.File(path, "r") as f:
        if "audio" not in f:
            raise DatasetError(f"{path}: has no audio (generated with --no-audio?), so its mels cannot be "
                               "recomputed")
        old_shape = tuple(f["mel"].shape[1:])
    if config.sample_rate != attrs["sample_rate"]:
        raise DatasetError(f"{path}: audio is at {attrs['sample_rate']} Hz, the feature config expects "
                           f"{config.sample_rate} Hz")
    in_place = output is None or Path(output).resolve() == path.resolve()
    if not in_place and Path(output).exists():
        raise DatasetError(f"{output} exists; delete it or choose another output path")
    n = attrs["n_rows"]
    t0 = time.perf_counter()
    with tqdm(total=n, unit="row", disable=not show_progress, desc="mels", dynamic_ncols=True) as bar:
        if in_place:
            _in_place(path, config, n, bar)
        else:
            _copy(path, Path(output), config, attrs, n, bar)
    return {"output": str(path if in_place else output), "rows": n, "old_shape": list(old_shape),
            "shape": list(config.shape), "in_place": in_place, "seconds": time.perf_counter() - t0}


def _in_place(path: Path, config: FeatureConfig, n: int, bar) -> None:
    import h5py

    try:
        f = h5py.File(path, "a")
    except OSError as e:
        raise DatasetError(f"{path}: cannot open it for writing ({e})") from None
    with f:
        if SCRATCH in f:
            del f[SCRATCH]  # left by an interrupted run
        new = f.create_dataset(SCRATCH, shape=(n, *config.shape), dtype=np.float16,
                               chunks=(min(max(n, 1), 16), *config.shape), compression="lzf")
        for s in range(0, n, BLOCK):
            e = min(s + BLOCK, n)
            new[s:e] = _mels(f["audio"], s, e, config)
            bar.update(e - s)
        f.attrs["complete"] = False
        f.flush()
        del f["mel"]
        f.move(SCRATCH, "mel")
        f.attrs["feature_config"] = config.to_json()
        f.attrs["complete"] = True


def _copy(path: Path, output: Path, config: FeatureConfig, attrs: dict, n: int, bar) -> None:
    import h5py

    from datagen.dataset import write_h5

    with h5py.File(path, "r") as f:
        rows = [k for k in f if f[k].shape[:1] == (n,)]
        other = [k for k in f if k not in rows]
        raw_attrs = {k: v for k, v in f.attrs.items() if k != "complete"}
        raw_attrs["feature_config"] = config.to_json()

        def chunks():
            for s in range(0, max(n, 1), BLOCK):
                e = min(s + BLOCK, n)
                chunk = {k: f[k][s:e] for k in rows if k != "mel"}
                chunk["mel"] = _mels(f["audio"], s, e, config)
                bar.update(e - s)
                yield chunk

        write_h5(output, chunks(), n, raw_attrs)
        if other:
            with h5py.File(output, "a") as out:
                for k in other:
                    out.create_dataset(k, data=f[k][()])
