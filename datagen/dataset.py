"""The HDF5 data set: schema, writer, reader helpers, split rule and shard merging.

One row per (preset, MIDI note). Layout (N rows; see research/dataset.md):

    audio        (N, n_samples)        int16  PCM, scale 1/32767 (absent with --no-audio)
    mel          (N, n_mels, n_frames) float16 datagen.features.log_mel of the row's audio
    continuous   (N, n_continuous)     float32 normalised [0, 1], registry.continuous order
    categorical  (N, n_categorical)    int32   index = raw - min, registry.categorical order
    wavetable    (N, 3)                int16   catalog index per oscillator, -1 = init table
    modulation   (N, 64, 6)            float32 per slot: source idx, destination idx, amount, bipolar,
                                               power, stereo; unused slots have source = destination = -1
    midi_note    (N,)                  int16
    preset_index (N,)                  int64   global sample index (seed-derived identity)
    preset_hash  (N,)                  S16     hex hash of the preset's labels
    split        (N,)                  uint8   0 train, 1 val, 2 test, decided by preset_hash
    rms, peak    (N,)                  float32 of the rendered audio

The dense modulation tensor (4, 32 sources, 428 destinations) is 219 KB per row; it is built on the fly by
`dense_modulation` in the loader instead of being stored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

if TYPE_CHECKING:
    from datagen.features import FeatureConfig
    from datagen.registry import Registry
    from datagen.render import RenderConfig
    from datagen.wavetables import Catalog

SCHEMA_VERSION = 1
TIER_REAL = 0  # the `tier` attr of a data set of real presets (ingested, or perturbed: every control counts)
SPLITS = ("train", "val", "test")
MOD_FIELDS = ("source", "destination", "amount", "bipolar", "power", "stereo")
MOD_CHANNELS = ("amount", "bipolar", "power", "stereo")  # channels of the dense tensor
PCM_SCALE = 32767.0


def to_pcm(audio: np.ndarray) -> np.ndarray:
    """float audio in [-1, 1] -> int16 as stored (values outside are clipped first)."""
    return np.round(np.clip(audio, -1.0, 1.0) * PCM_SCALE).astype(np.int16)


def from_pcm(pcm: np.ndarray) -> np.ndarray:
    """Stored int16 -> float32. Data sets compute their mels from this, not from the render's float audio, so
    a row's mel is a function of its stored audio (and of a 16-bit WAV of it)."""
    return np.asarray(pcm).astype(np.float32) / np.float32(PCM_SCALE)

# Row arrays, their dtypes, and trailing shapes given the attrs (filled in by `row_shapes`).
ROW_DTYPES = {
    "audio": np.int16, "mel": np.float16, "continuous": np.float32, "categorical": np.int32,
    "wavetable": np.int16, "modulation": np.float32, "midi_note": np.int16, "preset_index": np.int64,
    "preset_hash": "S16", "split": np.uint8, "rms": np.float32, "peak": np.float32,
}


class DatasetError(ValueError):
    """A data set that is missing, incomplete, or incompatible with what is asked of it."""


def split_of(preset_hash: str, *, val_percent: int = 5, test_percent: int = 5) -> int:
    """0/1/2 (train/val/test) from the preset hash alone, so all notes of a preset share a split."""
    bucket = int(preset_hash[:8], 16) % 100
    if bucket < 100 - val_percent - test_percent:
        return 0
    return 1 if bucket < 100 - test_percent else 2


def encode_modulations(modulations, registry) -> np.ndarray:
    """(64, 6) float32 sparse slots from a Preset's modulations."""
    from datagen.registry import MODULATION_SLOTS

    out = np.zeros((MODULATION_SLOTS, len(MOD_FIELDS)), np.float32)
    out[:, :2] = -1
    src = {s: i for i, s in enumerate(registry.sources)}
    dst = {d: i for i, d in enumerate(registry.destinations)}
    for i, m in enumerate(modulations):
        out[i] = (src[m.source], dst[m.destination], m.amount, float(m.bipolar), m.power, float(m.stereo))
    return out


def decode_modulations(slots: np.ndarray, registry) -> tuple:
    """Inverse of encode_modulations: a tuple of Modulation."""
    from datagen.preset import Modulation

    return tuple(
        Modulation(source=registry.sources[int(s)], destination=registry.destinations[int(d)], amount=float(a),
                   bipolar=bool(b), power=float(p), stereo=bool(st))
        for s, d, a, b, p, st in slots if s >= 0
    )


def registry_attrs(registry) -> dict:
    """The attributes every data set carries to say which controls its label columns are."""
    return {
        "schema_version": SCHEMA_VERSION,
        "registry_fingerprint": registry.fingerprint,
        "registry": json.dumps(registry.describe()),
        "continuous_names": json.dumps([p.name for p in registry.continuous]),
        "categorical_names": json.dumps([p.name for p in registry.categorical]),
        "sources": json.dumps(list(registry.sources)),
        "destinations": json.dumps(list(registry.destinations)),
    }


def run_manifest(config: dict, registry_fingerprint: str, catalog_fingerprint: str, **extra) -> dict:
    """A data set's `manifest` attribute (as a dict): the arguments it was made with and what they were resolved
    against. JSON-normalised (tuples -> lists), so it compares equal with one read back from a file."""
    d = {"config": config, "registry_fingerprint": registry_fingerprint, "catalog_fingerprint": catalog_fingerprint,
         "schema_version": SCHEMA_VERSION, **extra}
    return json.loads(json.dumps(d))


@dataclass(frozen=True)
class Manifest:
    """How a data set was made: what its HDF5 attributes say besides the rows. `generate` and `ingest` each
    fill one in; `attrs()` is the dict `write_h5` writes."""

    registry: Registry  # whose controls the label columns are
    catalog: Catalog  # what the wavetable indices mean
    config: dict  # the run's arguments, JSON-able (generate: its GenerateConfig, which `config_of` reads back)
    render: RenderConfig
    features: FeatureConfig
    notes: tuple[int, ...]  # MIDI notes per preset, in row order
    tier: int  # 0 for real presets (ingest)
    seed: int
    sampled_params: tuple[str, ...]  # the controls the presets set (the rest are the init preset's)
    sampled_modules: tuple[str, ...]
    n_presets: int
    rejections: dict[str, int]  # reason -> count, of presets generated or files ingested
    shard: tuple[int, int] = (0, 1)
    first_index: int = 0  # preset_index of the first preset
    source_folder: str | None = None  # ingest: the (absolute) folder of .vital files
    preset_files: tuple[str, ...] | None = None  # ingest: every file below it (relative), as preset_index counts

    def run_args(self) -> dict:
        """The `manifest` attribute, as a dict (see `run_manifest`)."""
        extra = {} if self.source_folder is None else {"source_folder": self.source_folder}
        return run_manifest(self.config, self.registry.fingerprint, self.catalog.fingerprint, **extra)

    def attrs(self) -> dict[str, Any]:
        """The HDF5 attributes (`write_h5` adds `complete`)."""
        attrs = {
            **registry_attrs(self.registry),
            "sampled_params": json.dumps(list(self.sampled_params)),
            "sampled_modules": json.dumps(list(self.sampled_modules)),
            "tier": self.tier,
            "seed": self.seed,
            "sample_rate": self.render.sample_rate,
            "render_config": json.dumps(dataclasses.asdict(self.render)),
            "feature_config": self.features.to_json(),
            "wavetable_catalog": self.catalog.to_json(),
            "wavetable_catalog_fingerprint": self.catalog.fingerprint,
            "notes": json.dumps(list(self.notes)),
            "shard": json.dumps(list(self.shard)),
            "first_index": self.first_index,
            "n_presets": self.n_presets,
            "n_rows": self.n_presets * len(self.notes),
            "audio_scale": 1.0 / PCM_SCALE,
            "manifest": json.dumps(self.run_args(), sort_keys=True),
            "rejections": json.dumps(dict(self.rejections)),
        }
        if self.source_folder is not None:
            attrs["source_folder"] = self.source_folder
        if self.preset_files is not None:
            attrs["preset_files"] = json.dumps(list(self.preset_files))
        return attrs


def as_stored(preset):
    """The preset at the precision data sets store labels (float32 continuous values, modulation amounts and
    powers). Render this, not the float64 original, so the stored labels rebuild exactly what was rendered:
    a last-bit difference changes feedback-heavy sounds audibly."""
    from dataclasses import replace

    f32 = lambda x: float(np.float32(x))  # noqa: E731
    return replace(preset, continuous={k: f32(v) for k, v in preset.continuous.items()},
                   modulations=tuple(replace(m, amount=f32(m.amount), power=f32(m.power)) for m in preset.modulations))


def labels_of(preset, registry, catalog=None) -> dict:
    """One preset's label arrays as data sets store them, and its hash (identity for the split rule).
    A wavetable not in the catalog (or the init table) is -1."""
    from datagen.wavetables import lookup

    cont = np.array([preset.continuous[p.name] for p in registry.continuous], np.float32)
    cat = np.array([preset.categorical[p.name] for p in registry.categorical], np.int32)
    found = [None if t is None or catalog is None else lookup(t, catalog) for t in preset.wavetables]
    wt = np.array([-1 if i is None else i for i in found], np.int16)
    mod = encode_modulations(preset.modulations, registry)
    digest = hashlib.sha256(b"".join(a.tobytes() for a in (cont, cat, wt, mod))).hexdigest()[:16]
    return {"continuous": cont, "categorical": cat, "wavetable": wt, "modulation": mod, "hash": digest}


def preset_rows(index: int, labels: dict, *, notes: tuple[int, ...], mel: np.ndarray, rms: np.ndarray,
                peak: np.ndarray, audio: np.ndarray | None) -> dict[str, np.ndarray]:
    """One preset's len(notes) rows: labels repeated per note; mel (notes, n_mels, frames), rms/peak
    (notes,), audio (notes, samples) int16 or None."""
    k = len(notes)
    rows = {
        "mel": mel,
        **{name: np.repeat(labels[name][None], k, 0) for name in ("continuous", "categorical", "wavetable", "modulation")},
        "midi_note": np.array(notes, np.int16),
        "preset_index": np.full(k, index, np.int64),
        "preset_hash": np.array([labels["hash"].encode()] * k, "S16"),
        "split": np.full(k, split_of(labels["hash"]), np.uint8),
        "rms": rms, "peak": peak,
    }
    if audio is not None:
        rows["audio"] = audio
    return rows


def dense_modulation(slots: np.ndarray, n_sources: int, n_destinations: int) -> np.ndarray:
    """(..., 64, 6) sparse slots -> (..., 5, n_sources, n_destinations) float32: channel 0 is presence,
    then amount, bipolar, power, stereo. Built per batch in the loader (219 KB per row dense)."""
    lead = slots.shape[:-2]
    flat = slots.reshape(-1, *slots.shape[-2:])
    out = np.zeros((flat.shape[0], 1 + len(MOD_CHANNELS), n_sources, n_destinations), np.float32)
    for b, rows in enumerate(flat):
        for s, d, a, bi, p, st in rows[rows[:, 0] >= 0]:
            out[b, :, int(s), int(d)] = (1.0, a, bi, p, st)
    return out.reshape(*lead, *out.shape[1:])


def write_h5(path: Path, chunks: Iterable[dict[str, np.ndarray]], n_rows: int, attrs: dict) -> None:
    """Write a complete data set atomically, streaming row chunks (memory stays at one chunk): into
    `<path>.partial`, then renamed, so no reader sees a half-written file under the final name;
    `attrs["complete"]` is set last."""
    import h5py

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        start = 0
        for chunk in chunks:
            if start == 0:
                for name, data in chunk.items():
                    f.create_dataset(name, shape=(n_rows, *data.shape[1:]), dtype=data.dtype,
                                     chunks=(min(n_rows, 16), *data.shape[1:]) if data.ndim > 1 else None,
                                     compression="lzf" if name in ("audio", "mel") else None)
            size = len(chunk["midi_note"])
            for name, data in chunk.items():
                f[name][start:start + size] = data
            start += size
        if start != n_rows:
            raise DatasetError(f"{path}: wrote {start} rows, expected {n_rows}")
        for k, v in attrs.items():
            f.attrs[k] = v
        f.attrs["complete"] = True
        f.flush()
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)


def read_attrs(path: Path, *, datasets: tuple[str, ...] = (), attrs: tuple[str, ...] = ()) -> dict:
    """Attributes of a complete data set; DatasetError with a one-line reason otherwise, also when one of
    `datasets` (HDF5 datasets such as "mel") or `attrs` (attributes) is missing."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such data set")
    try:
        with h5py.File(path, "r") as f:
            found = {k: _py(v) for k, v in f.attrs.items()}
            missing = [name for name in datasets if name not in f]
    except OSError as e:
        raise DatasetError(f"{path}: not an HDF5 data set ({e})") from None
    if missing:
        raise DatasetError(f"{path}: no {', '.join(repr(m) for m in missing)} dataset(s) in this file; it is not a "
                           "complete vital-match data set")
    if not found.get("complete"):
        raise DatasetError(f"{path}: incomplete data set (an interrupted write?)")
    if found.get("schema_version") != SCHEMA_VERSION:
        raise DatasetError(f"{path}: schema version {found.get('schema_version')} != {SCHEMA_VERSION}")
    absent = [a for a in attrs if a not in found]
    if absent:
        raise DatasetError(f"{path}: attribute(s) {', '.join(absent)} missing; not a complete vital-match data set")
    return found


def _py(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def merge(shards: list[Path], output: Path) -> dict:
    """Join shard files into one virtual data set (HDF5 VDS: no data copied). Shards must agree on every
    attribute except their shard/row bookkeeping. Returns the merged attrs."""
    import h5py

    if not shards:
        raise DatasetError("no shard files given")
    metas = [read_attrs(s) for s in shards]
    volatile = {"shard", "n_rows", "n_presets", "complete", "rejections", "first_index", "manifest"}
    base = {k: v for k, v in metas[0].items() if k not in volatile}

    def run_args(meta: dict) -> dict:  # the generation arguments, less which shard this file is
        args = json.loads(meta.get("manifest", "{}"))
        args.get("config", {}).pop("shard", None)
        return args

    for s, m in zip(shards[1:], metas[1:]):
        diff = sorted(k for k in base if m.get(k) != base[k])
        if run_args(m) != run_args(metas[0]):
            diff.append("generation arguments")
        if diff:
            raise DatasetError(f"{s}: differs from {shards[0]} in {', '.join(diff)}")
    with h5py.File(shards[0], "r") as f:
        names = list(f.keys())
        shapes = {n: f[n].shape[1:] for n in names}
        dtypes = {n: f[n].dtype for n in names}
    rows = []
    for s in shards:
        with h5py.File(s, "r") as f:
            rows.append(len(f["midi_note"]))
    total = sum(rows)
    output = Path(output)
    tmp = output.with_name(output.name + ".partial")
    with h5py.File(tmp, "w") as f:
        for n in names:
            layout = h5py.VirtualLayout(shape=(total, *shapes[n]), dtype=dtypes[n])
            start = 0
            for s, r in zip(shards, rows):
                # relative paths keep the merged file valid when the folder moves with its shards
                src = os.path.relpath(Path(s).resolve(), output.resolve().parent)
                layout[start:start + r] = h5py.VirtualSource(src, n, shape=(r, *shapes[n]))
                start += r
            f.create_virtual_dataset(n, layout)
        for k, v in base.items():
            f.attrs[k] = v
        manifest = json.loads(metas[0]["manifest"])
        manifest["config"]["shard"] = [0, 1]
        f.attrs["manifest"] = json.dumps(manifest, sort_keys=True)
        f.attrs["first_index"] = metas[0]["first_index"]
        f.attrs["n_rows"] = total
        f.attrs["n_presets"] = sum(m["n_presets"] for m in metas)
        f.attrs["shards"] = json.dumps([str(s) for s in shards])
        f.attrs["complete"] = True
    tmp.replace(output)
    return read_attrs(output)


def preset_from_row(row: dict[str, np.ndarray], *, registry, catalog=None):
    """Rebuild the Preset a row's labels describe (continuous, categorical, wavetable, modulation).

    row: one row's arrays (`continuous`, `categorical`, `wavetable`, `modulation`), in the column order of
    the registry (check `registry_fingerprint` first). catalog: the data set's wavetable catalog
    (`datagen.wavetables.Catalog.from_json(attrs["wavetable_catalog"])`); -1 means the init table.
    Controls that are not labels (LFO shapes, the noise sample) come from the init preset.
    """
    from datagen.preset import Preset, init_preset

    base = init_preset(registry)
    cont = dict(zip((p.name for p in registry.continuous), (float(x) for x in row["continuous"])))
    cat = dict(zip((p.name for p in registry.categorical), (int(x) for x in row["categorical"])))
    tables = tuple(None if int(i) < 0 else catalog[int(i)].data for i in row["wavetable"])
    return Preset(continuous=cont, categorical=cat, wavetables=tables,
                  modulations=decode_modulations(np.asarray(row["modulation"]), registry),
                  meta=dict(base.meta), extras=dict(base.extras))


def load_catalog(attrs: dict):
    from datagen.wavetables import Catalog

    return Catalog.from_json(attrs["wavetable_catalog"])
