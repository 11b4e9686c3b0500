"""Wavetables: Vital's wavetable JSON, a procedural catalog of tables, and tables harvested from real presets.

Vital's wavetable format. A `.vital` file holds one wavetable per oscillator in `settings["wavetables"][i]`
(i = 0..2), each a JSON object:

    {"name": "Init", "author": "", "version": "1.5.5", "full_normalize": true, "remove_all_dc": true,
     "groups": [{"components": [{"type": "Wave Source", "interpolation": 1, "interpolation_style": 1,
                                 "keyframes": [{"position": 0, "wave_data": "<base64>"}, ...]}]}]}

- `wave_data` is base64 of 2048 little-endian float32 samples: one cycle of the waveform.
- `position` is a frame index in 0..256; the oscillator's `osc_N_wave_frame` control (raw 0..256, normalised
  0..1 in a `Preset`) sweeps across it, and Vital interpolates between keyframes (`interpolation_style`
  1 = linear; `interpolation` 0 = in time, 1 = in frequency, Vital's default). One keyframe: the frame control
  does nothing.
- `full_normalize` / `remove_all_dc` make Vital rescale the table to full level and remove DC itself.
- Real presets also use other component types ("Audio File Source", "Line Source", "Wave Folder", ...):
  they are carried unchanged when harvested from files (`tables_from_presets`).

A `Catalog` is the ordered list of tables a model chooses from; its JSON (`to_json`) is embedded in HDF5
datasets and checkpoints, and `fingerprint` identifies it. `default_catalog()` is procedural: built by code
(the frames by `datagen.waveforms`), deterministic and bit-stable, so its fingerprint is pinned by a test.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from datagen.preset import SYNTH_VERSION, find_presets
from datagen.registry import N_OSCILLATORS
from datagen.waveforms import N_SAMPLES, procedural_frames

log = logging.getLogger(__name__)

MAX_POSITION = 256  # last keyframe position; osc_N_wave_frame spans 0..256
TIME_INTERPOLATION, FREQUENCY_INTERPOLATION = 0, 1  # Wave Source "interpolation"
CATALOG_FORMAT = "vital-match-wavetables/1"
_NON_CONTENT_FIELDS = ("name", "author", "version")  # labels only; Vital's sound does not depend on them


class WavetableError(ValueError):
    """A wavetable or catalog document that cannot be used."""


def content_hash(data: dict) -> str:
    """sha256 hex of a wavetable's sound-defining JSON (everything except name, author and version)."""
    content = {k: v for k, v in data.items() if k not in _NON_CONTENT_FIELDS}
    return hashlib.sha256(_canonical(content).encode()).hexdigest()


def _canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class Wavetable:
    name: str  # unique within a catalog; may differ from data["name"] (the label Vital shows)
    data: dict  # Vital's wavetable JSON object, as stored in settings["wavetables"][i]

    @property
    def keyframes(self) -> int:
        """Distinct keyframe positions over all components; 1 means `wave_frame` changes nothing."""
        return len({kf.get("position") for c in _components(self.data) for kf in c.get("keyframes", ())
                    if isinstance(kf, dict)})

    @property
    def content_hash(self) -> str:
        return content_hash(self.data)

    def wave_frames(self) -> list[np.ndarray]:
        """The decoded frames of every "Wave Source" component, in stored order: each (2048,) float32."""
        return [decode_wave(kf["wave_data"]) for c in _components(self.data) if c.get("type") == "Wave Source"
                for kf in c.get("keyframes", ())]


def _components(data: dict) -> list[dict]:
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        return []
    return [c for g in groups if isinstance(g, dict) for c in g.get("components", ()) if isinstance(c, dict)]


def encode_wave(samples: np.ndarray) -> str:
    """(2048,) samples -> Vital's `wave_data`: base64 of little-endian float32."""
    samples = np.asarray(samples)
    if samples.shape != (N_SAMPLES,) or not np.all(np.isfinite(samples)):
        raise WavetableError(f"a frame must be {N_SAMPLES} finite samples, got shape {samples.shape}")
    return base64.b64encode(samples.astype("<f4").tobytes()).decode("ascii")


def decode_wave(wave_data: str) -> np.ndarray:
    """Vital's `wave_data` -> (2048,) float32."""
    raw = base64.b64decode(wave_data)
    if len(raw) != 4 * N_SAMPLES:
        raise WavetableError(f"wave_data holds {len(raw)} bytes, expected {4 * N_SAMPLES}")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def even_positions(n: int) -> list[int]:
    """n keyframe positions spread evenly over 0..256, the first at 0 and (for n > 1) the last at 256."""
    if not 1 <= n <= MAX_POSITION + 1:
        raise WavetableError(f"{n} keyframes; a table holds 1..{MAX_POSITION + 1}")
    return [0] if n == 1 else [round(i * MAX_POSITION / (n - 1)) for i in range(n)]


def wave_from_samples(name: str, frames: list[np.ndarray], positions: list[int] | None = None, *,
                      interpolation: int = FREQUENCY_INTERPOLATION) -> Wavetable:
    """A one-component "Wave Source" table from frames of (2048,) samples, stored as given (float32; Vital
    normalises and removes DC itself). `positions` default to `even_positions(len(frames))`."""
    positions = even_positions(len(frames)) if positions is None else [int(p) for p in positions]
    if len(positions) != len(frames) or not frames:
        raise WavetableError(f"{name}: {len(frames)} frames but {len(positions)} positions")
    if positions[0] < 0 or positions[-1] > MAX_POSITION or any(a >= b for a, b in zip(positions, positions[1:])):
        raise WavetableError(f"{name}: positions must increase strictly within 0..{MAX_POSITION}: {positions}")
    keyframes = [{"position": p, "wave_data": encode_wave(f)} for p, f in zip(positions, frames)]
    component = {"type": "Wave Source", "interpolation": int(interpolation), "interpolation_style": 1,
                 "keyframes": keyframes}
    data = {"name": name, "author": "", "version": SYNTH_VERSION, "full_normalize": True, "remove_all_dc": True,
            "groups": [{"components": [component]}]}
    return Wavetable(name=name, data=data)


# ---- the catalog -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Catalog:
    tables: tuple[Wavetable, ...]  # order defines the class index a model predicts

    def __post_init__(self):
        names = [t.name for t in self.tables]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise WavetableError(f"catalog names must be unique; repeated: {', '.join(dup[:5])}")

    def __len__(self) -> int:
        return len(self.tables)

    def __getitem__(self, i: int) -> Wavetable:
        return self.tables[i]

    def __iter__(self) -> Iterator[Wavetable]:
        return iter(self.tables)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tables]

    def index(self, name: str) -> int:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no wavetable named {name!r} in the catalog") from None

    @functools.cached_property
    def _by_name(self) -> dict[str, int]:
        return {t.name: i for i, t in enumerate(self.tables)}

    @functools.cached_property
    def _by_hash(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i, t in enumerate(self.tables):
            out.setdefault(t.content_hash, i)
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): `from_json(c.to_json()).to_json() == c.to_json()`."""
        return self._json

    @functools.cached_property
    def _json(self) -> str:
        return _canonical({"format": CATALOG_FORMAT, "tables": [{"name": t.name, "data": t.data} for t in self]})

    @functools.cached_property
    def fingerprint(self) -> str:
        """First 16 hex digits of the sha256 of `to_json()`."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> "Catalog":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise WavetableError(f"wavetable catalog is not JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(doc, dict) or doc.get("format") != CATALOG_FORMAT or not isinstance(doc.get("tables"), list):
            raise WavetableError(f"not a wavetable catalog (expected format {CATALOG_FORMAT!r})")
        tables = []
        for t in doc["tables"]:
            if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not isinstance(t.get("data"), dict):
                raise WavetableError("wavetable catalog entry without a string name and a data object")
            tables.append(Wavetable(name=t["name"], data=t["data"]))
        return cls(tuple(tables))

    def extend(self, tables: Iterable[Wavetable]) -> "Catalog":
        """A new catalog with `tables` appended, skipping content duplicates (of this catalog or each other);
        a clashing name gets a " #2", " #3", ... suffix."""
        seen, names, out = set(self._by_hash), set(self._by_name), list(self.tables)
        for t in tables:
            h = t.content_hash
            if h in seen:
                continue
            seen.add(h)
            name = _unique_name(t.name, names)
            out.append(t if name == t.name else Wavetable(name=name, data=t.data))
        return Catalog(tuple(out))


def lookup(preset_wavetable_json: dict, catalog: Catalog) -> int | None:
    """Index of the catalog table with the same content as a preset's wavetable, else None."""
    if not isinstance(preset_wavetable_json, dict):
        return None
    try:
        return catalog._by_hash.get(content_hash(preset_wavetable_json))
    except (ValueError, TypeError, RecursionError):  # NaN/Infinity inside: no catalog table holds it
        return None


def _unique_name(name: str, taken: set[str]) -> str:
    out, k = name, 2
    while out in taken:
        out, k = f"{name} #{k}", k + 1
    taken.add(out)
    return out


# ---- tables from real presets ------------------------------------------------------------------------


def tables_from_presets(folder: str | Path) -> list[Wavetable]:
    """Every distinct wavetable (by content) in the `.vital` files below a folder, named
    "<preset stem>/<table name>" (made unique with " #2", ...). Files are visited in sorted order, so the
    result is deterministic; unreadable files are skipped with one warning each."""
    seen: set[str] = set()
    names: set[str] = set()
    out: list[Wavetable] = []
    for path in find_presets(folder):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            tables = doc["settings"]["wavetables"]
            if not isinstance(tables, list):
                raise TypeError("'wavetables' is not a list")
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:  # ValueError: bad JSON, huge int
            reason = (str(e).splitlines() or [""])[0][:200]
            log.warning("%s: skipped, no readable wavetables (%s: %s)", path, e.__class__.__name__, reason)
            continue
        skipped = []
        for i, data in enumerate(tables[:N_OSCILLATORS]):
            try:
                if not _components(data):
                    raise ValueError("no components")
                h = content_hash(data)  # ValueError for NaN/inf, which JSON cannot carry back
            except (ValueError, TypeError, RecursionError) as e:
                skipped.append(f"#{i + 1} ({e})")
                continue
            if h in seen:
                continue
            seen.add(h)
            label = data.get("name") if isinstance(data.get("name"), str) else ""
            out.append(Wavetable(name=_unique_name(f"{path.stem}/{label}", names), data=data))
        if skipped:
            log.warning("%s: skipped %d wavetable(s): %s", path, len(skipped), ", ".join(skipped))
    return out


# ---- the procedural catalog --------------------------------------------------------------------------


def procedural_catalog() -> list[Wavetable]:
    """The procedural tables (`datagen.waveforms.procedural_frames`), in a fixed order: Vital's own Init saw
    first, then basic shapes, pulses, harmonic sweeps, additive and formant tables, FM, sync, noise/bitcrush
    and waveshaping."""
    return [wave_from_samples(name, frames) for name, frames in procedural_frames()]


@functools.lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The procedural catalog (built once per process, ~0.1 s)."""
    return Catalog(tuple(procedural_catalog()))
