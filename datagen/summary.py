"""Look inside a data set: `summarize` (schema, attrs, splits, label statistics, loudness, modulation counts),
`plot_mels` (a spectrogram PNG of a few rows) and `row_audio` (one row's audio, stored or re-rendered).

Label statistics are taken over presets, not rows: every preset contributes one row (its first), so a data set
rendered at three notes does not count each preset three times. Reads go block by block (`BLOCK` rows), so
memory stays bounded on a 200k-row set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datagen.dataset import PCM_SCALE, SPLITS, DatasetError, read_attrs

BLOCK = 4096  # rows per read
LABELS = ("continuous", "categorical", "wavetable", "modulation")
ROW_NAMES = ("mel", *LABELS, "midi_note", "preset_index", "preset_hash", "split", "rms", "peak")
RMS_PERCENTILES = (0, 5, 25, 50, 75, 95, 100)
LEAST_VARIED = 10  # continuous parameters listed in the compact summary
SAME_TOL = 1e-5  # |x - init| at or below this counts as "left at the init value" (labels are float32)


def open_checked(path: Path, *, need: tuple[str, ...] = ROW_NAMES) -> dict:
    """`read_attrs` plus a check that the row datasets `need` exist with n_rows rows. DatasetError otherwise."""
    import h5py

    path = Path(path)
    attrs = read_attrs(path)
    with h5py.File(path, "r") as f:
        missing = [n for n in need if n not in f]
        if missing:
            raise DatasetError(f"{path}: not a vital-match data set (no {', '.join(missing)} dataset)")
        n_rows = attrs.get("n_rows")
        bad = [n for n in need if f[n].shape[0] != n_rows]
        if bad:
            raise DatasetError(f"{path}: datasets {', '.join(bad)} do not have n_rows = {n_rows} rows")
    return attrs


def first_rows(preset_index: np.ndarray) -> np.ndarray:
    """Sorted row numbers of the first row of every distinct preset."""
    _, first = np.unique(preset_index, return_index=True)
    return np.sort(first)


def _blocks(n: int):
    for s in range(0, n, BLOCK):
        yield s, min(s + BLOCK, n)


def summarize(path: Path) -> dict:
    """Everything `datagen inspect` prints, as JSON-able data.

    Keys: path, schema (dataset -> shape, dtype), attrs (tier, seed, fingerprints, counts, notes, sample rate,
    feature/render config, catalog size, rejections, source folder), registry_matches (the installed vita's
    fingerprint equals the file's), splits (split -> rows, presets), notes (MIDI note -> rows), rms
    (percentile -> value, over rows), modulations (connections per preset: mean/min/max), wavetables
    (distinct indices, fraction at the init table), continuous (per-parameter stats + a compact summary),
    categorical (per-parameter distinct counts + summary), importance (stored weights, if any).
    """
    import h5py

    from datagen.registry import load_registry

    path = Path(path)
    attrs = open_checked(path)
    registry = load_registry()
    matches = attrs.get("registry_fingerprint") == registry.fingerprint
    cont_names = json.loads(attrs["continuous_names"])
    cat_names = json.loads(attrs["categorical_names"])
    sampled = set(json.loads(attrs.get("sampled_params", "[]")))

    with h5py.File(path, "r") as f:
        schema = {name: {"shape": list(ds.shape), "dtype": str(ds.dtype)} for name, ds in f.items()}
        n = attrs["n_rows"]
        preset_index = f["preset_index"][:]
        split = f["split"][:]
        notes = f["midi_note"][:]
        rms = f["rms"][:]
        peak = f["peak"][:]
        keep = np.zeros(n, bool)
        keep[first_rows(preset_index)] = True
        acc = _Accumulator(len(cont_names), len(cat_names))
        for s, e in _blocks(n):
            sel = keep[s:e]
            if sel.any():
                acc.add(f["continuous"][s:e][sel], f["categorical"][s:e][sel], f["wavetable"][s:e][sel],
                        f["modulation"][s:e][sel][:, :, 0])
        importance = f["importance_continuous"][:].tolist() if "importance_continuous" in f else None

    init = None
    if matches:
        from datagen.preset import init_preset

        base = init_preset(registry)
        init = np.array([base.continuous[name] for name in cont_names], np.float64)

    splits = {}
    for i, name in enumerate(SPLITS):
        rows = split == i
        splits[name] = {"rows": int(rows.sum()), "presets": int(len(np.unique(preset_index[rows])))}
    catalog_size = len(json.loads(attrs["wavetable_catalog"])["tables"]) if "wavetable_catalog" in attrs else None
    return {
        "path": str(path),
        "schema": schema,
        "attrs": {
            "schema_version": attrs.get("schema_version"),
            "tier": attrs.get("tier"),
            "seed": attrs.get("seed"),
            "registry_fingerprint": attrs.get("registry_fingerprint"),
            "wavetable_catalog_fingerprint": attrs.get("wavetable_catalog_fingerprint"),
            "n_presets": attrs.get("n_presets"),
            "n_rows": n,
            "notes": json.loads(attrs.get("notes", "[]")),
            "sample_rate": attrs.get("sample_rate"),
            "feature_config": json.loads(attrs["feature_config"]) if "feature_config" in attrs else None,
            "render_config": json.loads(attrs["render_config"]) if "render_config" in attrs else None,
            "catalog_size": catalog_size,
            "rejections": json.loads(attrs.get("rejections", "{}")),
            "source_folder": attrs.get("source_folder"),
            "shards": json.loads(attrs["shards"]) if "shards" in attrs else None,
        },
        "registry_matches": matches,
        "has_audio": "audio" in schema,
        "splits": splits,
        "notes": {int(k): int(v) for k, v in zip(*np.unique(notes, return_counts=True))},
        "rms": {f"p{q}": float(v) for q, v in zip(RMS_PERCENTILES, np.percentile(rms, RMS_PERCENTILES))},
        "peak_max": float(peak.max()) if n else 0.0,
        "modulations": acc.modulation_summary(),
        "wavetables": acc.wavetable_summary(),
        "continuous": acc.continuous_summary(cont_names, sampled, init),
        "categorical": acc.categorical_summary(cat_names, sampled, json.loads(attrs["registry"])["params"]),
        "importance": importance,
    }


class _Accumulator:
    """Running per-parameter statistics over the first row of each preset."""

    def __init__(self, n_cont: int, n_cat: int):
        self.count = 0
        self.sum = np.zeros(n_cont)
        self.sumsq = np.zeros(n_cont)
        self.min = np.full(n_cont, np.inf)
        self.max = np.full(n_cont, -np.inf)
        self.cont_blocks: list[np.ndarray] = []  # kept only to count "differs from init" once init is known
        self.seen: list[set] = [set() for _ in range(n_cat)]
        self.n_mods: list[np.ndarray] = []
        self.tables: list[np.ndarray] = []

    def add(self, cont: np.ndarray, cat: np.ndarray, wavetable: np.ndarray, mod_source: np.ndarray) -> None:
        x = cont.astype(np.float64)
        self.count += len(x)
        self.sum += x.sum(0)
        self.sumsq += (x * x).sum(0)
        self.min = np.minimum(self.min, x.min(0))
        self.max = np.maximum(self.max, x.max(0))
        self.cont_blocks.append(cont)  # float32: 1.2 KB per preset
        for j, column in enumerate(cat.T):
            self.seen[j].update(np.unique(column).tolist())
        self.n_mods.append((mod_source >= 0).sum(1))
        self.tables.append(wavetable.ravel())

    def continuous_summary(self, names: list[str], sampled: set, init: np.ndarray | None) -> dict:
        c = max(self.count, 1)
        mean = self.sum / c
        std = np.sqrt(np.maximum(self.sumsq / c - mean**2, 0.0))
        differs = None
        if init is not None and self.cont_blocks:
            x = np.concatenate(self.cont_blocks).astype(np.float64)
            differs = (np.abs(x - init) > SAME_TOL).mean(0)
        params = [
            {"name": name, "mean": float(mean[j]), "std": float(std[j]), "min": float(self.min[j]),
             "max": float(self.max[j]), "sampled": name in sampled,
             "differs_from_init": None if differs is None else float(differs[j])}
            for j, name in enumerate(names)
        ]
        pool = [p for p in params if p["sampled"]] or params  # real presets: no sampled list, use all
        key = (lambda p: (p["differs_from_init"], p["std"])) if differs is not None else (lambda p: (p["std"],))
        least = sorted(pool, key=key)[:LEAST_VARIED]
        return {
            "n": len(names), "n_sampled": sum(p["sampled"] for p in params),
            "n_varied": None if differs is None else int((differs > 0).sum()),
            "n_sampled_never_varied": None if differs is None else sum(
                1 for p in params if p["sampled"] and p["differs_from_init"] == 0),
            "least_varied": [p["name"] for p in least],
            "params": params,
        }

    def categorical_summary(self, names: list[str], sampled: set, registry_params: list) -> dict:
        n_classes = {p[0]: int(round(p[3] - p[2])) + 1 for p in registry_params if p[4]}
        params = [{"name": name, "distinct": len(self.seen[j]), "n_classes": n_classes.get(name),
                   "sampled": name in sampled} for j, name in enumerate(names)]
        pool = [p for p in params if p["sampled"]] or params
        return {
            "n": len(names), "n_sampled": sum(p["sampled"] for p in params),
            "n_constant": sum(1 for p in pool if p["distinct"] <= 1),
            "n_all_classes_seen": sum(1 for p in pool if p["n_classes"] and p["distinct"] >= p["n_classes"]),
            "fewest_distinct": [p["name"] for p in sorted(pool, key=lambda p: (p["distinct"], p["name"]))
                                [:LEAST_VARIED]],
            "params": params,
        }

    def modulation_summary(self) -> dict:
        n = np.concatenate(self.n_mods) if self.n_mods else np.zeros(0, int)
        if not len(n):
            return {"mean": 0.0, "min": 0, "max": 0, "presets_without": 0}
        return {"mean": float(n.mean()), "min": int(n.min()), "max": int(n.max()),
                "presets_without": int((n == 0).sum())}

    def wavetable_summary(self) -> dict:
        t = np.concatenate(self.tables) if self.tables else np.zeros(0, int)
        return {"distinct": int(len(np.unique(t[t >= 0]))), "init_fraction": float((t < 0).mean()) if len(t) else 0.0}


# ---- pictures ------------------------------------------------------------------------------------------


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)


def summary_text(s: dict) -> str:
    """`summarize`'s dict as the lines `python -m datagen inspect` prints."""
    lines: list[str] = []
    echo = lines.append
    a = s["attrs"]
    fc = a["feature_config"] or {}
    echo(f"{s['path']}: {a['n_presets']} presets, {a['n_rows']} rows; tier {a['tier']}"
         + (" (real presets)" if a["tier"] == 0 else f", seed {a['seed']}"))
    if a["source_folder"]:
        echo(f"  source folder: {a['source_folder']}")
    echo(f"  registry {a['registry_fingerprint']} ("
         + ("matches the installed vita" if s["registry_matches"] else "DIFFERS from the installed vita")
         + f"); wavetable catalog {a['catalog_size']} tables ({a['wavetable_catalog_fingerprint']})")
    echo(f"  notes {a['notes']} at {a['sample_rate']} Hz; mel {fc.get('n_mels')} bands (n_fft "
         f"{fc.get('n_fft')}, hop {fc.get('hop_length')}, {fc.get('f_min'):g}-{fc.get('f_max'):g} Hz, "
         f"{fc.get('duration'):g} s)")
    echo(f"  rejections: {a['rejections'] or 'none'}")
    echo("datasets:")
    for name, d in s["schema"].items():
        echo(f"  {name:<22} {str(tuple(d['shape'])):<20} {d['dtype']}")
    echo("splits: " + ", ".join(f"{k} {v['rows']} rows / {v['presets']} presets" for k, v in s["splits"].items()))
    echo("rms: " + "  ".join(f"{k} {v:.4f}" for k, v in s["rms"].items()) + f"   (peak max {s['peak_max']:.3f})")
    m = s["modulations"]
    echo(f"modulation connections per preset: mean {m['mean']:.2f}, min {m['min']}, max {m['max']} "
         f"({m['presets_without']} presets without)")
    w = s["wavetables"]
    echo(f"wavetables: {w['distinct']} distinct catalog tables, {w['init_fraction']:.0%} of oscillators on init")
    c = s["continuous"]
    echo(f"continuous: {c['n']} parameters, {c['n_sampled']} sampled, {_fmt(c['n_varied'])} differ from "
         f"init somewhere, {_fmt(c['n_sampled_never_varied'])} sampled but never varied")
    by_name = {p["name"]: p for p in c["params"]}
    echo("  least varied:")
    for name in c["least_varied"]:
        p = by_name[name]
        differs = "-" if p["differs_from_init"] is None else f"{p['differs_from_init']:.0%}"
        echo(f"    {name:<28} differs {differs:>4}  mean {p['mean']:.3f}  std {p['std']:.3f}"
             f"  [{p['min']:.3f}, {p['max']:.3f}]")
    k = s["categorical"]
    by_name = {p["name"]: p for p in k["params"]}
    echo(f"categorical: {k['n']} parameters, {k['n_sampled']} sampled, {k['n_all_classes_seen']} show every "
         f"class, {k['n_constant']} constant")
    echo("  fewest distinct: " + ", ".join(
        f"{n} {by_name[n]['distinct']}/{by_name[n]['n_classes']}" for n in k["fewest_distinct"]))
    if s["importance"] is not None:
        echo(f"importance weights: stored ({len(s['importance'])} continuous parameters)")
    return "\n".join(lines)


def pick_rows(n_rows: int, count: int = 4) -> list[int]:
    """`count` row numbers spread evenly over 0..n_rows-1 (fewer when the set is smaller)."""
    if n_rows <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n_rows - 1, min(count, n_rows))})


def plot_mels(path: Path, output: Path, *, rows: list[int] | None = None, count: int = 4) -> list[int]:
    """Write a PNG with the stored mel spectrograms of a few rows (default: `count` rows spread over the set),
    one panel each, frames on x, mel bands on y. Returns the rows drawn."""
    import h5py
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    attrs = open_checked(path, need=("mel", "midi_note", "split", "preset_index"))
    n = attrs["n_rows"]
    rows = pick_rows(n, count) if rows is None else [int(r) for r in rows]
    for r in rows:
        _check_row(path, r, n)
    if not rows:
        raise DatasetError(f"{path}: has no rows to draw")
    config = json.loads(attrs["feature_config"])
    seconds = config["hop_length"] / config["sample_rate"]
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 2.2 * len(rows)), squeeze=False)
    with h5py.File(path, "r") as f:
        for ax, r in zip(axes[:, 0], rows):
            mel = f["mel"][r].astype(np.float32)  # (n_mels, n_frames) natural-log power
            im = ax.imshow(mel, origin="lower", aspect="auto", cmap="magma",
                           extent=(0, mel.shape[1] * seconds, 0, mel.shape[0]))
            ax.set_title(f"row {r}: note {int(f['midi_note'][r])}, preset {int(f['preset_index'][r])}, "
                         f"{SPLITS[int(f['split'][r])]}", fontsize=9)
            ax.set_ylabel("mel band")
            fig.colorbar(im, ax=ax, pad=0.01, label="ln power")
        axes[-1, 0].set_xlabel("seconds")
    fig.suptitle(f"{path.name}: log-mel ({config['n_mels']} bands)", fontsize=10)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return rows


# ---- one row's audio -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowAudio:
    audio: np.ndarray  # (n_samples,) float32 in [-1, 1] ((n_samples, 2) for a stereo set)
    sample_rate: int  # Hz
    row: int
    midi_note: int
    preset_index: int
    rendered: bool  # True: re-rendered from the labels (the set stores no audio); False: the stored PCM


def _check_row(path: Path, row: int, n_rows: int) -> None:
    if not 0 <= row < n_rows:
        raise DatasetError(f"{path}: row {row} is out of range (the set has {n_rows} rows: 0..{n_rows - 1})")


def row_audio(path: Path, row: int) -> RowAudio:
    """Row `row`'s audio: the stored int16 PCM / 32767 when the set has audio, else a render of the preset its
    labels describe (`preset_from_row`, the set's render config and notes, `Renderer.render_notes` in a forked
    worker as `generate` renders; a crash or refusal is a RenderError). For generated sets this is what
    `datagen.generate.LabelRenderer` renders: generate rendered the sampler's float64 values but stores float32
    labels, so waveforms differ by up to ~0.03 while spectra agree. For ingested sets it reproduces what the
    labels say, not controls that are not labels (custom LFO shapes and samples come from the init preset)."""
    import h5py

    path = Path(path)
    attrs = open_checked(path, need=("midi_note", "preset_index", *LABELS))
    _check_row(path, int(row), attrs["n_rows"])
    row = int(row)
    sample_rate = int(attrs["sample_rate"])
    with h5py.File(path, "r") as f:
        note, index = int(f["midi_note"][row]), int(f["preset_index"][row])
        if "audio" in f:
            audio = f["audio"][row].astype(np.float32) / np.float32(PCM_SCALE)
            return RowAudio(audio=audio if audio.ndim == 1 else audio.T, sample_rate=sample_rate, row=row,
                            midi_note=note, preset_index=index, rendered=False)
        labels = {k: f[k][row] for k in LABELS}

    from datagen.dataset import load_catalog, preset_from_row
    from datagen.isolation import Worker
    from datagen.registry import load_registry
    from datagen.render import RenderError

    registry = load_registry()
    if attrs.get("registry_fingerprint") != registry.fingerprint:
        raise DatasetError(f"{path}: labels are for registry {attrs.get('registry_fingerprint')}, the installed "
                           f"vita has {registry.fingerprint}; cannot re-render a set without audio")
    preset = preset_from_row(labels, registry=registry, catalog=load_catalog(attrs))
    from datagen.generate import label_config

    labelled = label_config(attrs)  # the set's render config, and the notes this row's preset was rendered at
    config, notes = labelled.render, labelled.notes_of(index)
    if note not in notes:
        notes = (note,)
    # As generate and ingest render: every note of the preset's rows in order, in a fork of a pristine worker
    # (Vital's state depends on process history), so a re-render reproduces the stored audio.
    with Worker(_render_notes_handler, config, timeout=300.0, fork=True) as worker:
        try:
            audio = worker.call((preset.to_vital_text(registry), notes), label=f"row {row}")[notes.index(note)]
        except RuntimeError as e:  # WorkerCrash, or Vital refused the preset
            raise RenderError(f"{path}: {e}") from None
    return RowAudio(audio=audio if audio.ndim == 1 else audio.T, sample_rate=sample_rate, row=row,
                    midi_note=note, preset_index=index, rendered=True)


def _render_notes_handler(config):
    """Worker init: (vital JSON text, notes) -> `Renderer.render_notes` (notes, samples) float32."""
    from datagen.render import Renderer

    renderer = Renderer(config)
    return lambda request: renderer.render_notes(request[0], tuple(request[1]))
