"""The preset bank: many presets, heard once at several notes, so a clip's nearest sounds are a lookup away.

An entry is a preset rendered at one note and reduced to a compact audio embedding (`embed`): the log-mel
spectrogram pooled to `EMBED_BANDS` bands x `EMBED_SEGMENTS` time segments (its level removed), float16.
Sampler presets are stored only as (tier, index): the sampler is a pure function of (seed, tier, index), so
`Bank.preset(row)` rebuilds the exact preset (same hash as when it was heard). Real presets (only the "build"
half of the fixed split, `datagen.preset.shared_split`) are stored as their `.vital` JSON as `read_vital` reads
them (what was heard), compressed. Perturbed presets (`datagen.perturb`: the real ones moved a little and
recombined, as the network's training data are) are stored as (PERTURBED, index) and rebuilt from the stored real
presets: a perturbed preset is a pure function of (bases, config, index) too.

Building (`build`, `python -m datagen bank`) renders through the render pool (deterministic, crash-isolated) in
chunks of `CHUNK` presets, each written atomically to `<output>.parts/`; a rerun skips finished chunks (resume
after a kill), `shard=(i, n)` builds every n-th chunk (job arrays), and the bank file is written once every
chunk is there. `Bank.nearest(audio, note=..., k=...)` returns the presets whose entries at the bank note
nearest the clip's sound closest (L1 over the embedding), perturbed entries and the others taking turns.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from datagen.atomic import atomic_path
from datagen.features import FeatureConfig, rms
from datagen.perturb import PerturbConfig
from datagen.render import RenderConfig

log = logging.getLogger(__name__)

BANK_SEED = 9_000_001  # a seed of its own: no data set, random search or proposal draws these presets
EMBED_BANDS = 32  # mel bands after pooling (of the feature config's n_mels)
EMBED_SEGMENTS = 8  # time segments the clip is pooled into
EMBED_FLOOR = 18.0  # nats (~78 dB) under the loudest cell: quieter cells count as this quiet
CHUNK = 64  # presets per resumable chunk
FORMAT = 1
REAL = 0  # the `tier` of an entry that is a real preset
PERTURBED = -1  # the `tier` of an entry that is a real preset perturbed (`datagen.perturb`)


class BankError(ValueError):
    """A bank file that cannot be used (missing, another format, another registry)."""


@dataclass(frozen=True, kw_only=True)
class BankConfig:
    presets_per_tier: int = 500  # sampler presets of each tier
    tiers: tuple[int, ...] = (1, 2, 3)
    notes: tuple[int, ...] = (36, 48, 60, 72)  # MIDI notes every preset is heard at
    seed: int = BANK_SEED
    sampler_version: int = 2  # `datagen.sampler.VERSIONS`
    real: tuple[str, ...] = ()  # paths of real presets to add (the "build" split only)
    perturbed: int = 0  # presets perturbed from `real` (their seed is `seed`); needs `real`
    perturb: PerturbConfig = PerturbConfig(p_recombine=0.2)  # how (the recipe of the network's realistic data)
    render: RenderConfig = RenderConfig()
    features: FeatureConfig = FeatureConfig()

    def __post_init__(self):
        if self.perturbed and not self.real:
            raise BankError("perturbed presets are drawn from real ones: give the real presets too")

    def to_json(self) -> str:
        d = asdict(self)
        d["real"] = [Path(p).name for p in self.real]
        return json.dumps(d, sort_keys=True)


def embed(audio: np.ndarray, features: FeatureConfig) -> np.ndarray:
    """(EMBED_BANDS * EMBED_SEGMENTS,) float32: the log-mel of (samples,) mono audio pooled to bands x segments
    (mean power per cell, then log), its loudest cell at 0 and everything else floored at -EMBED_FLOOR."""
    from datagen.features import log_mel

    mel = np.exp(log_mel(np.asarray(audio, np.float32), features).astype(np.float64))  # (n_mels, frames) power
    bands = np.array_split(np.arange(mel.shape[0]), EMBED_BANDS)
    segments = np.array_split(np.arange(mel.shape[1]), EMBED_SEGMENTS)
    pooled = np.array([[mel[np.ix_(b, s)].mean() for s in segments] for b in bands])  # (bands, segments)
    cells = np.log(pooled + 1e-12)
    return np.maximum(cells - cells.max(), -EMBED_FLOOR).astype(np.float32).ravel()


@dataclass
class Bank:
    """Entries (one per preset x note) and what rebuilds their presets."""

    tier: np.ndarray  # (rows,) int8: the sampler tier, REAL or PERTURBED
    index: np.ndarray  # (rows,) int32: the sampler or perturber index, or the position in `real`
    note: np.ndarray  # (rows,) int8: the MIDI note heard
    embedding: np.ndarray  # (rows, EMBED_BANDS * EMBED_SEGMENTS) float16
    hash: np.ndarray  # (rows,) S16: the preset's hash (datagen.dataset.labels_of), to check rebuilds
    config: dict = field(default_factory=dict)  # BankConfig as JSON, plus registry and catalog fingerprints
    real: list[str] = field(default_factory=list)  # the real presets' .vital JSON texts

    def __len__(self) -> int:
        return len(self.tier)

    def preset(self, row: int):
        """The preset of one entry: rebuilt from the sampler, or parsed from its stored JSON."""
        from datagen.preset import Preset

        if int(self.tier[row]) == REAL:
            return Preset.from_vital(json.loads(self.real[int(self.index[row])]), source="bank entry")
        if int(self.tier[row]) == PERTURBED:
            return self._perturber.sample(int(self.index[row]))
        version = int(self.config.get("sampler_version", 1))  # banks from before versions were sampler 1
        return _sampler(int(self.tier[row]), int(self.config["seed"]), version).sample(int(self.index[row]))

    @functools.cached_property
    def _perturber(self):
        from dataclasses import replace

        from datagen.perturb import Perturber
        from datagen.preset import Preset
        from datagen.registry import load_registry

        bases = [Preset.from_vital(json.loads(text), source="bank entry") for text in self.real]
        config = replace(PerturbConfig(**self.config["perturb"]), seed=int(self.config["seed"]))
        return Perturber(bases, config, registry=load_registry())

    def nearest(self, audio: np.ndarray, *, note: int, k: int) -> list:
        """The presets of the `k` entries closest to `audio` ((samples,) mono at the features' rate) among those
        heard at the bank note nearest `note`; one entry per preset. Perturbed entries and the others take turns
        (each kind nearest first): thousands of perturbed neighbours, close to many sounds, must not displace
        the one sampler or real entry that found a sound (research/benchmarks.md, "Perturbed real presets in
        the bank")."""
        if len(self) == 0 or k <= 0:
            return []
        features = FeatureConfig(**self.config["features"])
        notes = np.unique(self.note)
        at = int(notes[np.argmin(np.abs(notes.astype(int) - int(note)))])
        rows = np.flatnonzero(self.note == at)
        d = np.abs(self.embedding[rows].astype(np.float32) - embed(audio, features)[None]).mean(axis=1)  # (rows,)
        ranked = rows[np.argsort(d, kind="stable")]
        perturbed = self.tier[ranked] == PERTURBED  # (rows,) bool
        within = np.zeros(len(ranked), np.int64)  # each entry's rank among its own kind
        within[~perturbed], within[perturbed] = np.arange((~perturbed).sum()), np.arange(perturbed.sum())
        chosen = ranked[np.lexsort((perturbed, within))[:k]]  # by rank within kind, the unperturbed first
        return [self.preset(int(r)) for r in chosen]

    def save(self, path: str | Path) -> Path:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, tier=self.tier, index=self.index, note=self.note, embedding=self.embedding,
                            hash=self.hash, config=np.frombuffer(json.dumps(self.config).encode(), np.uint8),
                            real=np.frombuffer(zlib.compress(json.dumps(self.real).encode(), 9), np.uint8))
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getvalue())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, *, check_registry: bool = True) -> "Bank":
        path = Path(path)
        try:
            with np.load(path) as z:
                config = json.loads(bytes(z["config"]).decode())
                bank = cls(tier=z["tier"], index=z["index"], note=z["note"], embedding=z["embedding"], hash=z["hash"],
                           config=config, real=json.loads(zlib.decompress(bytes(z["real"])).decode()))
        except FileNotFoundError:
            raise BankError(f"{path}: no such bank") from None
        except (OSError, ValueError, KeyError, zlib.error) as e:
            raise BankError(f"{path}: not a preset bank ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
                from None
        if config.get("format") != FORMAT:
            raise BankError(f"{path}: bank format {config.get('format')}, this code reads format {FORMAT}")
        if check_registry:
            from datagen.registry import load_registry
            from datagen.wavetables import default_catalog

            if config.get("registry_fingerprint") != load_registry().fingerprint:
                raise BankError(f"{path}: built for another vita (registry {config.get('registry_fingerprint')})")
            if config.get("catalog_fingerprint") != default_catalog().fingerprint:
                raise BankError(f"{path}: built with another wavetable catalog; rebuild it")
        return bank


@functools.lru_cache(maxsize=8)
def _sampler(tier: int, seed: int, version: int):
    """The sampler of a tier, over the installed registry and the default catalog (what banks are built with)."""
    from datagen.sampler import Sampler, SamplerConfig

    return Sampler(SamplerConfig(tier=tier, seed=seed, version=version))


def preset_hash(preset, registry, catalog) -> bytes:
    from datagen.dataset import labels_of

    return labels_of(preset, registry, catalog)["hash"].encode()


# ---- building --------------------------------------------------------------------------------------------------


def _jobs(config: BankConfig) -> list[tuple[int, int, int]]:
    """(chunk number, tier, first index) of every chunk: sampler chunks per tier, one chunk of real presets, then
    chunks of perturbed ones (a bank built before perturbed entries existed numbers its chunks alike)."""
    out = []
    for tier in config.tiers:
        for start in range(0, config.presets_per_tier, CHUNK):
            out.append((len(out), tier, start))
    if config.real:
        out.append((len(out), REAL, 0))
    for start in range(0, config.perturbed, CHUNK):
        out.append((len(out), PERTURBED, start))
    return out


def build(output: str | Path, config: BankConfig = BankConfig(), *, workers: int | None = None,
          shard: tuple[int, int] = (0, 1), show_progress: bool = True) -> dict:
    """Build (or resume) the bank at `output` (.npz). Returns {chunks, done, rows, written (bool), seconds}."""
    import time

    from tqdm import tqdm

    from datagen.pool import RenderPool
    from datagen.preset import read_vital
    from datagen.registry import load_registry
    from datagen.wavetables import default_catalog

    output = Path(output)
    t0 = time.perf_counter()
    registry, catalog = load_registry(), default_catalog()
    parts = output.with_name(output.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    manifest = parts / "config.json"
    signature = json.dumps({"config": json.loads(config.to_json()), "registry": registry.fingerprint,
                            "catalog": catalog.fingerprint, "format": FORMAT}, sort_keys=True)
    if manifest.exists() and manifest.read_text() != signature:
        raise BankError(f"{parts} holds a build with other settings; delete it or choose another output")
    if not manifest.exists():
        with atomic_path(manifest) as tmp:
            tmp.write_text(signature)
    jobs = _jobs(config)
    mine = [j for j in jobs if j[0] % shard[1] == shard[0]]
    todo = [j for j in mine if not (parts / f"chunk_{j[0]:05d}.npz").exists()]
    real = [read_vital(p, registry=registry) for p in config.real]
    if config.perturbed:
        from dataclasses import replace

        from datagen.perturb import Perturber

        perturber = Perturber(real, replace(config.perturb, seed=config.seed), registry=registry)
    with RenderPool(sample_rate=config.render.sample_rate, workers=workers, registry=registry) as pool, \
            tqdm(total=len(mine), initial=len(mine) - len(todo), unit="chunk", desc="bank",
                 disable=not show_progress, dynamic_ncols=True) as bar:
        for number, tier, start in todo:
            if tier == REAL:
                presets, indices = real, list(range(len(real)))
            elif tier == PERTURBED:
                indices = list(range(start, min(start + CHUNK, config.perturbed)))
                presets = [perturber.sample(i) for i in indices]
            else:
                sampler = _sampler(tier, config.seed, config.sampler_version)
                indices = list(range(start, min(start + CHUNK, config.presets_per_tier)))
                presets = [sampler.sample(i) for i in indices]
            rows = {"tier": [], "index": [], "note": [], "embedding": [], "hash": []}
            hashes = [preset_hash(p, registry, catalog) for p in presets]
            for note in config.notes:
                for i, p, h, r in zip(indices, presets, hashes, pool.render(presets, note=note, config=config.render)):
                    if not r.ok or rms(r.audio) < 1e-5:
                        continue  # failed or silent at this note: no entry
                    rows["tier"].append(tier)
                    rows["index"].append(i)
                    rows["note"].append(note)
                    rows["embedding"].append(embed(r.audio, config.features).astype(np.float16))
                    rows["hash"].append(h)
            with atomic_path(parts / f"chunk_{number:05d}.npz") as tmp:
                np.savez(tmp, tier=np.array(rows["tier"], np.int8), index=np.array(rows["index"], np.int32),
                         note=np.array(rows["note"], np.int8),
                         embedding=np.array(rows["embedding"], np.float16).reshape(-1, EMBED_BANDS * EMBED_SEGMENTS),
                         hash=np.array(rows["hash"], "S16"))
            bar.update(1)
    done = [j for j in jobs if (parts / f"chunk_{j[0]:05d}.npz").exists()]
    written = False
    if len(done) == len(jobs):
        # stored as read (unknown keys dropped, values clamped): rebuilding an entry then warns about nothing
        bank = _merge(parts, jobs, config, registry, catalog, real_texts=[p.to_vital_text(registry) for p in real])
        bank.save(output)
        written = True
    return {"chunks": len(jobs), "done": len(done), "rows": sum(_rows(parts, j) for j in done), "written": written,
            "seconds": time.perf_counter() - t0}


def _rows(parts: Path, job) -> int:
    with np.load(parts / f"chunk_{job[0]:05d}.npz") as z:
        return len(z["tier"])


def _merge(parts: Path, jobs, config: BankConfig, registry, catalog, *, real_texts: list[str]) -> Bank:
    arrays = {k: [] for k in ("tier", "index", "note", "embedding", "hash")}
    for job in jobs:
        with np.load(parts / f"chunk_{job[0]:05d}.npz") as z:
            for k in arrays:
                arrays[k].append(z[k])
    meta = {**json.loads(config.to_json()), "format": FORMAT, "registry_fingerprint": registry.fingerprint,
            "catalog_fingerprint": catalog.fingerprint,
            "digest": hashlib.sha256(b"".join(np.concatenate(arrays["hash"]).tolist())).hexdigest()[:16]}
    return Bank(tier=np.concatenate(arrays["tier"]), index=np.concatenate(arrays["index"]),
                note=np.concatenate(arrays["note"]), embedding=np.concatenate(arrays["embedding"]),
                hash=np.concatenate(arrays["hash"]), config=meta, real=real_texts)
