"""Reading `datagen` HDF5 data sets for training: one file, several shard files, or a merged virtual set.

`PresetDataset(paths, split=...)` yields one row per item as numpy arrays; `collate` stacks a batch into torch
tensors and expands the sparse modulation slots into the dense (B, 5, sources, destinations) target the loss
wants (219 KB per row dense, so it is never stored). Files are opened once per process (lazily, so the
dataset pickles into DataLoader workers) and never per item.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datagen.dataset import SPLITS, DatasetError, read_attrs

ROW_FIELDS = ("mel", "continuous", "categorical", "wavetable", "modulation", "midi_note")
REQUIRED_ATTRS = ("registry_fingerprint", "tier", "feature_config", "render_config", "wavetable_catalog", "n_rows")


@dataclass(frozen=True)
class DataInfo:
    """What every file of a training set must agree on, and what the checkpoint records."""

    registry_fingerprint: str
    tier: int
    feature_config: str  # FeatureConfig JSON
    render_config: str  # RenderConfig JSON: how the rows were rendered (the checkpoint's, for inference renders)
    wavetable_catalog: str  # Catalog JSON
    n_rows: int


class PresetDataset:
    def __init__(self, paths: list[Path] | Path, *, split: str | None = "train"):
        from datagen.registry import load_registry

        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        if not self.paths:
            raise DatasetError("no data set files given")
        if split is not None and split not in SPLITS:
            raise DatasetError(f"split must be one of {SPLITS}, got {split!r}")
        metas = [read_attrs(p, datasets=(*ROW_FIELDS, "split"), attrs=REQUIRED_ATTRS) for p in self.paths]
        fingerprint = load_registry().fingerprint
        for p, m in zip(self.paths, metas):
            if m.get("registry_fingerprint") != fingerprint:
                raise DatasetError(f"{p}: made with registry {m.get('registry_fingerprint')}, the installed vita "
                                   f"has {fingerprint}; regenerate the data set")
        for key in ("tier", "feature_config", "render_config", "wavetable_catalog_fingerprint"):
            values = {json.dumps(_parsed(m.get(key)) if key == "render_config" else m.get(key), sort_keys=True)
                      for m in metas}
            if len(values) > 1:
                raise DatasetError(f"the data set files disagree on {key}: {sorted(values)}")
        self.info = DataInfo(registry_fingerprint=fingerprint, tier=int(metas[0]["tier"]),
                             feature_config=metas[0]["feature_config"],
                             render_config=metas[0]["render_config"],
                             wavetable_catalog=metas[0]["wavetable_catalog"],
                             n_rows=sum(int(m["n_rows"]) for m in metas))
        self.attrs = metas[0]
        self.index = self._rows(split)  # (N, 2): file number, row within the file
        if len(self.index) == 0:
            raise DatasetError(f"{', '.join(map(str, self.paths))}: no rows in split {split!r}")
        self._files = None  # h5py handles, opened on first access in each process

    def _rows(self, split: str | None) -> np.ndarray:
        import h5py

        parts = []
        for k, p in enumerate(self.paths):
            with h5py.File(p, "r") as f:
                rows = np.arange(len(f["midi_note"])) if split is None \
                    else np.flatnonzero(f["split"][:] == SPLITS.index(split))
            parts.append(np.stack([np.full(len(rows), k), rows], axis=1))
        return np.concatenate(parts).astype(np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        k, row = self.index[i]
        f = self._open()[k]
        return {name: f[name][row] for name in ROW_FIELDS}

    def __getitems__(self, indices: list[int]) -> list[dict[str, np.ndarray]]:
        """The rows of a whole batch (what DataLoader asks for when a dataset has this method): one read per
        file and field, in row order, so a compressed chunk of mels is decompressed once per batch, not once
        per row, and each field is one h5py call (per-row reads took ~1.4x as long)."""
        files = self._open()
        where = self.index[np.asarray(indices, dtype=np.int64)]  # (n, 2): file, row
        items: list[dict | None] = [None] * len(where)
        for k in np.unique(where[:, 0]):
            mine = np.flatnonzero(where[:, 0] == k)
            rows, inverse = np.unique(where[mine, 1], return_inverse=True)  # h5py wants increasing rows
            fields = {name: files[k][name][rows] for name in ROW_FIELDS}
            for j, at in zip(inverse, mine):
                items[at] = {name: v[j] for name, v in fields.items()}
        return items

    def _open(self) -> list:
        if self._files is None:
            import h5py

            self._files = [h5py.File(p, "r") for p in self.paths]
        return self._files

    def __getstate__(self) -> dict:  # DataLoader workers reopen the files themselves
        return {**self.__dict__, "_files": None}

    def importance(self) -> np.ndarray | None:
        """Per-continuous-parameter importance from `datagen compute-weights`, if the (first) file has it."""
        import h5py

        with h5py.File(self.paths[0], "r") as f:
            return f["importance_continuous"][:] if "importance_continuous" in f else None


def _parsed(text: str):
    """A JSON attribute as data (so key order or spacing is no disagreement), or the text itself if it is not JSON."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def collate(items: list[dict[str, np.ndarray]], *, n_sources: int, n_destinations: int) -> dict:
    """Stack a batch. mel (B, 1, n_mels, frames) float32; continuous (B, n_cont) float32; categorical
    (B, n_cat) int64; wavetable (B, 3) int64 as classes (0 = init table, k = catalog index k - 1);
    modulation (B, 5, S, D) float32 dense (presence, amount, bipolar, power, stereo); midi_note (B,) int64."""
    import torch

    mel = torch.from_numpy(np.stack([x["mel"] for x in items]).astype(np.float32)).unsqueeze(1)
    slots = torch.from_numpy(np.stack([x["modulation"] for x in items]))  # (B, 64, 6)
    b, n_slots, _ = slots.shape
    dense = torch.zeros(b, 5, n_sources * n_destinations)
    active = slots[..., 0] >= 0  # (B, 64)
    flat = (slots[..., 0].clamp_min(0) * n_destinations + slots[..., 1].clamp_min(0)).long()  # (B, 64)
    values = torch.cat([torch.ones(b, n_slots, 1), slots[..., 2:]], dim=-1)  # (B, 64, 5)
    values = values * active[..., None]  # unused slots point at cell 0 and add nothing
    for c in range(5):  # (source, destination) pairs are unique per preset, so adding never double-counts
        dense[:, c].scatter_add_(1, flat, values[..., c])
    return {
        "mel": mel,
        "continuous": torch.from_numpy(np.stack([x["continuous"] for x in items])),
        "categorical": torch.from_numpy(np.stack([x["categorical"] for x in items]).astype(np.int64)),
        "wavetable": torch.from_numpy(np.stack([x["wavetable"] for x in items]).astype(np.int64) + 1),
        "modulation": dense.view(b, 5, n_sources, n_destinations),
        "midi_note": torch.from_numpy(np.stack([x["midi_note"] for x in items]).astype(np.int64)),
    }


def routed_from_slots(slots: np.ndarray, *, n_sources: int):
    """(N, S) float32 torch 0/1: the sources each row routes anywhere, from stored slots (N, 64, 6) whose
    column 0 is the source index (-1 = unused slot); what `training.losses.routed_sources` reads from the
    dense target."""
    import torch

    src = np.asarray(slots)[..., 0].astype(np.int64)  # (N, 64)
    routed = np.zeros((len(src), n_sources + 1), np.float32)
    np.put_along_axis(routed, np.where(src < 0, n_sources, src), 1.0, axis=1)
    return torch.from_numpy(routed[:, :n_sources])
