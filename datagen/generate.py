"""`datagen generate`: sample presets, render them at several notes, compute features, write HDF5.

Parallelism: `workers` threads in this process, each driving its own crash-isolated worker process
(`datagen.isolation.ThreadWorkers`) that samples, renders (one Synth), checks and featurises one preset per request.
A segfault costs that preset's attempt (logged, counted as a rejection) and the worker restarts.

Resumability: work is cut into chunks of `chunk_size` presets. Each finished chunk is saved atomically under
`<output>.parts/` next to a manifest of the arguments; the HDF5 file is assembled from the chunks at the end
and renamed into place (`datagen.dataset.write_h5`). Kill the run at any moment (SIGKILL included) and the
same command resumes with the chunks it has; since every preset is a pure function of (seed, index,
attempt), the result is byte-for-byte the data set an uninterrupted run writes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from datagen.console import ConfigError
from datagen.dataset import (TIER_REAL, DatasetError, Manifest, from_pcm, labels_of, preset_rows, read_attrs,
                             run_manifest, to_pcm, write_h5)
from datagen.features import FeatureConfig, rms
from datagen.perturb import PerturbConfig
from datagen.render import RenderConfig
from datagen.sampler import SamplerConfig

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 50  # per preset; a sampler that needs more is broken, not unlucky
_REJECTED = "_rejected"  # chunk-file entry: that chunk's rejection counts (JSON), not a column


@dataclass(frozen=True)
class GenerateConfig:
    tier: int = 3
    n_presets: int = 1000
    seed: int = 0
    sampler_version: int = 2  # `datagen.sampler.VERSIONS`: 2 orders interchangeable slots canonically
    notes: tuple[int, ...] = (48, 60, 72)  # MIDI notes rendered per preset (one row each)
    # each preset's notes move together by k semitones, k uniform in -note_shift..note_shift and a pure function
    # of (seed, index): with 12 the rows cover every note from 12 below the lowest to 12 above the highest, so a
    # model that hears the note sees it between and beyond the fixed notes, at no extra renders
    note_shift: int = 0
    render: RenderConfig = RenderConfig()
    features: FeatureConfig = FeatureConfig()
    store_audio: bool = True
    shard: tuple[int, int] = (0, 1)  # (i, N): this file holds the i-th of N contiguous index ranges
    chunk_size: int = 16  # presets per resumable chunk
    wavetables_from: str | None = None  # folder of .vital files whose tables join the procedural catalog
    perturb_from: str | None = None  # a folder whose README splits its presets: perturb its "build" half instead
    perturb: PerturbConfig = PerturbConfig()  # (`datagen.perturb`; the data set's tier is then 0, real presets)
    min_rms: float = 1e-3  # below: silent (-60 dBFS)
    min_peak: float = 1e-2
    max_peak: float = 1.0  # at or above: clipped

    def __post_init__(self):
        if self.n_presets <= 0:
            raise ConfigError(f"the number of presets must be positive, got {self.n_presets}")
        i, n = self.shard
        if not (n >= 1 and 0 <= i < n):
            raise ConfigError(f"shard must be i/N with 0 <= i < N, got {i}/{n}")
        if n > self.n_presets:
            raise ConfigError(f"{n} shards for {self.n_presets} presets leaves shards empty")
        if not self.notes or any(not 0 <= x <= 127 for x in self.notes):
            raise ConfigError(f"notes must be MIDI numbers 0..127, got {self.notes}")
        if self.note_shift < 0:
            raise ConfigError(f"the note shift must be >= 0 semitones, got {self.note_shift}")
        if min(self.notes) - self.note_shift < 0 or max(self.notes) + self.note_shift > 127:
            raise ConfigError(f"notes {self.notes} shifted by up to {self.note_shift} semitones leave MIDI 0..127")
        if self.render.sample_rate != self.features.sample_rate:
            raise ConfigError("render and feature sample rates differ")
        self.sampler_config  # validates the tier and version

    @property
    def sampler_config(self) -> SamplerConfig:
        return SamplerConfig(tier=self.tier, seed=self.seed, version=self.sampler_version)

    def notes_of(self, index: int) -> tuple[int, ...]:
        """The MIDI notes preset `index` is rendered at (its rows' `midi_note`): `notes`, shifted together."""
        if not self.note_shift:
            return self.notes
        from datagen.sampler import seed_of

        k = int(np.random.default_rng(seed_of(self.seed, index, 0, 7)).integers(-self.note_shift, self.note_shift + 1))
        return tuple(n + k for n in self.notes)

    @property
    def data_tier(self) -> int:
        """The data set's `tier`: the sampler's, or 0 (real presets: every control counts) when perturbing."""
        return TIER_REAL if self.perturb_from else self.tier

    def sampler(self, registry, catalog):
        """What draws this run's presets (`sample(index, attempt)`, `sampled_params`): the tier's sampler, or a
        `datagen.perturb.Perturber` of the "build" presets of `perturb_from`."""
        if not self.perturb_from:
            from datagen.sampler import Sampler

            return Sampler(self.sampler_config, registry=registry, catalog=catalog)
        from datagen.perturb import Perturber
        from datagen.preset import PresetError, read_vital, shared_split

        try:
            bases = [read_vital(p, registry=registry) for p in shared_split("build", self.perturb_from)]
        except PresetError as e:
            raise ConfigError(f"--perturb-from: {e}") from None
        return Perturber(bases, replace(self.perturb, seed=self.seed), registry=registry)

    def catalog(self):
        """The wavetable catalog of this run: procedural tables, then any found under `wavetables_from`."""
        from datagen.wavetables import default_catalog, tables_from_presets

        catalog = default_catalog()
        return catalog.extend(tables_from_presets(self.wavetables_from)) if self.wavetables_from else catalog

    @property
    def indices(self) -> range:
        """Global preset indices this shard generates (contiguous: shard files concatenate in order)."""
        i, n = self.shard
        return range(i * self.n_presets // n, (i + 1) * self.n_presets // n)

    def manifest(self, registry_fingerprint: str, catalog_fingerprint: str) -> dict:
        """The data set's `manifest` attribute (and the resume check's), JSON-normalised."""
        return run_manifest(dataclasses.asdict(self), registry_fingerprint, catalog_fingerprint)


@dataclass
class Stats:
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> count
    seconds: float = 0.0

    @property
    def attempts(self) -> int:
        return self.accepted + sum(self.rejected.values())

    @property
    def rejection_rate(self) -> float:
        return sum(self.rejected.values()) / max(self.attempts, 1)


# ---- worker side ---------------------------------------------------------------------------------------

def level(audio: np.ndarray) -> dict[str, np.ndarray]:
    """Per-note RMS and peak of (notes, samples) audio, float32."""
    return {"rms": np.asarray(rms(audio), dtype=np.float32),
            "peak": np.abs(audio).max(axis=-1).astype(np.float32)}


def rejection(audio: np.ndarray, config: GenerateConfig) -> str | None:
    """Why a (notes, samples) render is unusable ("non-finite", "silent", "clipped"), or None."""
    if not np.all(np.isfinite(audio)):
        return "non-finite"
    lv = level(audio)
    if np.any(lv["rms"] < config.min_rms) or np.any(lv["peak"] < config.min_peak):
        return "silent"
    if np.any(lv["peak"] >= config.max_peak):
        return "clipped"
    return None


def _handler(config: GenerateConfig):
    """Built once per worker process (then forked per request, so every request starts from this state).
    Requests: ("sample", index, attempt) -> result dict; ("render", vital_json_text, notes) -> (notes, samples).

    No torch here: the mel is computed by the parent, so the process forked per request stays small (a fork
    of a process holding torch costs ~30 ms, of one holding only vita ~15 ms)."""
    from datagen.registry import load_registry
    from datagen.render import Renderer

    registry = load_registry()
    catalog = config.catalog()
    # the parent read the same presets and reported what they hold that we ignore, once; not once per worker
    logging.getLogger("datagen.preset").setLevel(logging.ERROR)
    sampler = config.sampler(registry, catalog)
    renderer = Renderer(config.render, registry=registry)

    def handle(request: tuple) -> dict | np.ndarray:
        if request[0] == "render":
            return renderer.render_notes(request[1], request[2])
        _, index, attempt = request
        preset = sampler.sample(index, attempt)
        audio = renderer.render_notes(preset, config.notes_of(index))  # (notes, samples)
        reason = rejection(audio, config)
        if reason:
            return {"rejected": reason}
        return {"labels": labels_of(preset, registry, catalog), "audio": audio, **level(audio)}

    return handle


# ---- parent side ---------------------------------------------------------------------------------------

def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class _Run:
    """Work is handed out per preset (so workers stay balanced), stored per chunk (so a kill loses little):
    a chunk file is written, atomically, by whichever thread completes its last preset."""

    def __init__(self, config: GenerateConfig, parts: Path, todo: list[tuple[int, range]], progress):
        from datagen.isolation import ThreadWorkers

        self.config, self.parts, self.progress = config, parts, progress
        self.stats = Stats()
        self.lock = threading.Lock()
        self.workers = ThreadWorkers(_handler, config, timeout=300.0, fork=True)  # one per thread; closed by generate
        self.chunks = dict(todo)
        self.queue = iter([(c, i) for c, idx in todo for i in idx])
        self.done: dict[int, dict[int, dict]] = {c: {} for c, _ in todo}  # chunk -> index -> rows
        self.rejected: dict[int, Counter] = {c: Counter() for c, _ in todo}  # chunk -> reason -> count

    def one(self, index: int, rejected: Counter) -> dict:
        from datagen.isolation import WorkerCrash

        for attempt in range(MAX_ATTEMPTS):
            try:
                result = self.workers.call(("sample", index, attempt), label=f"preset {index} attempt {attempt}")
            except WorkerCrash as e:
                log.warning("%s", e)
                result = {"rejected": "crash"}
            with self.lock:
                if "rejected" in result:
                    self.stats.rejected[result["rejected"]] += 1
                    rejected[result["rejected"]] += 1
                    continue
                self.stats.accepted += 1
                self.progress.update(1)
                self.progress.set_postfix(rejected=f"{self.stats.rejection_rate:.0%}", refresh=False)
            return result
        raise RuntimeError(f"preset {index}: {MAX_ATTEMPTS} attempts rejected; the sampler is broken")

    def work(self) -> None:
        """One thread: take presets until none is left."""
        from datagen.features import clip_mels

        while True:
            with self.lock:
                item = next(self.queue, None)
            if item is None:
                return
            c, i = item
            r = self.one(i, self.rejected[c])
            pcm = to_pcm(r["audio"])  # (notes, samples) int16: accepted renders never clip
            rows = preset_rows(
                i, r["labels"], notes=self.config.notes_of(i), rms=r["rms"], peak=r["peak"],
                mel=clip_mels(from_pcm(pcm), self.config.features).astype(np.float16),
                audio=pcm if self.config.store_audio else None)
            with self.lock:
                self.done[c][i] = rows
                complete = len(self.done[c]) == len(self.chunks[c])
            if complete:
                self.save(c)

    def save(self, c: int) -> None:
        rows = self.done.pop(c)
        path = self.parts / f"chunk_{c:06d}.npz"
        tmp = path.with_name(path.name + ".tmp")  # not matched by chunk_*.npz
        with open(tmp, "wb") as f:
            # the chunk's rejections travel with it, so a resumed run still reports the whole run's counts
            np.savez(f, **_concat([rows[i] for i in self.chunks[c]]),
                     **{_REJECTED: np.array(json.dumps(self.rejected[c]))})
        tmp.replace(path)  # atomic: a chunk file exists only when complete


def generate(output: Path, config: GenerateConfig, *, workers: int = 1, show_progress: bool = True) -> dict:
    """Generate (or resume, or confirm) a data set. Returns stats: presets, rows, rejections, seconds."""
    from tqdm import tqdm

    from datagen.registry import load_registry

    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    output = Path(output)
    registry = load_registry()
    catalog = config.catalog()
    sampler = config.sampler(registry, catalog)  # ConfigError now, not in every worker
    manifest = config.manifest(registry.fingerprint, catalog.fingerprint)
    if output.exists():
        return _existing(output, config, registry.fingerprint)
    parts = output.with_name(output.name + ".parts")
    _prepare_parts(parts, manifest)

    indices = config.indices
    chunks = [indices[s:s + config.chunk_size] for s in range(0, len(indices), config.chunk_size)]
    todo = [(c, idx) for c, idx in enumerate(chunks) if not (parts / f"chunk_{c:06d}.npz").exists()]
    done_presets = len(indices) - sum(len(idx) for _, idx in todo)
    if done_presets:
        log.info("resuming: %d of %d presets already generated in %s", done_presets, len(indices), parts)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # mels are computed in the worker threads, one core each (restored below)
    t0 = time.perf_counter()
    with tqdm(total=len(indices), initial=done_presets, unit="preset", disable=not show_progress,
              desc=f"tier {config.data_tier}", dynamic_ncols=True) as bar:
        run = _Run(config, parts, todo, bar)
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for f in [pool.submit(run.work) for _ in range(workers)]:
                    f.result()
        finally:
            torch.set_num_threads(threads)
            run.workers.close()
    stats = run.stats
    stats.seconds = time.perf_counter() - t0

    chunk_files = [parts / f"chunk_{c:06d}.npz" for c in range(len(chunks))]
    n_rows = len(indices) * len(config.notes)
    rejected = Counter()
    for path in chunk_files:
        with np.load(path) as z:
            rejected.update(json.loads(str(z[_REJECTED])))
    attrs = Manifest(
        registry=registry, catalog=catalog, config=dataclasses.asdict(config), render=config.render,
        features=config.features, notes=config.notes, tier=config.data_tier, seed=config.seed,
        sampled_params=tuple(sampler.sampled_params), sampled_modules=tuple(sampler.sampled_modules),
        n_presets=len(indices), rejections=dict(rejected), shard=config.shard, first_index=indices.start).attrs()
    write_h5(output, ({k: v for k, v in np.load(p).items() if k != _REJECTED} for p in chunk_files), n_rows, attrs)
    shutil.rmtree(parts)
    return {"presets": len(indices), "rows": attrs["n_rows"], "generated": stats.accepted,
            "rejected": dict(stats.rejected), "rejection_rate": stats.rejection_rate, "seconds": stats.seconds,
            "output": str(output)}


class LabelRenderer:
    """Renders presets exactly as `generate` rendered a data set's rows (same worker state, forked per
    request), so labels re-rendered reproduce the stored audio. `render(preset, notes) -> (notes, samples)`: give
    the notes its rows were rendered at (`GenerateConfig.notes_of(preset_index)`), all of them, in order."""

    def __init__(self, config: GenerateConfig):
        from datagen.isolation import Worker

        self._worker = Worker(_handler, config, timeout=300.0, fork=True)

    def render(self, preset, notes: tuple[int, ...]) -> np.ndarray:
        return self._worker.call(("render", preset.to_vital_text(), tuple(notes)), label=f"preset {preset.name!r}")

    def close(self) -> None:
        self._worker.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def config_of(attrs: dict) -> GenerateConfig:
    """The GenerateConfig a data set was made with (from its manifest attribute)."""
    d = json.loads(attrs["manifest"])["config"]
    d.setdefault("sampler_version", 1)  # made before sampler versions existed: version 1 drew its presets
    return GenerateConfig(**{**d, "notes": tuple(d["notes"]), "shard": tuple(d["shard"]),
                             "render": RenderConfig(**d["render"]), "features": FeatureConfig(**d["features"]),
                             "perturb": PerturbConfig(**d.get("perturb", {}))})


def label_config(attrs: dict) -> GenerateConfig:
    """The GenerateConfig whose LabelRenderer renders like a data set's rows: `config_of` for generated sets;
    for ingested ones (whose manifest is not a GenerateConfig) one built from their notes and render settings.
    `wavetables_from` and `perturb_from` are dropped: renders take everything from the preset, and the folders
    may be gone."""
    try:
        config = config_of(attrs)
    except (KeyError, TypeError, ValueError):
        config = GenerateConfig(notes=tuple(json.loads(attrs["notes"])),
                                render=RenderConfig(**json.loads(attrs["render_config"])),
                                features=FeatureConfig.from_json(attrs["feature_config"]))
    return replace(config, wavetables_from=None, perturb_from=None)


def _prepare_parts(parts: Path, manifest: dict) -> None:
    path = parts / "manifest.json"
    if parts.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old != manifest:
            raise DatasetError(f"{parts} holds an interrupted run with different arguments; rerun with the same "
                               "arguments to resume it, or delete that folder")
        return
    parts.mkdir(parents=True)
    tmp = parts / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, sort_keys=True, indent=1))
    tmp.replace(path)


def _existing(output: Path, config: GenerateConfig, fingerprint: str) -> dict:
    try:
        attrs = read_attrs(output)
    except DatasetError as e:
        raise DatasetError(f"{e}; delete it or choose another output path") from None
    if attrs.get("registry_fingerprint") != fingerprint:
        raise DatasetError(f"{output} exists with registry fingerprint {attrs.get('registry_fingerprint')}, "
                           f"the installed vita has {fingerprint}; choose another output path")
    if attrs.get("tier") != config.data_tier:
        raise DatasetError(f"{output} exists with tier {attrs.get('tier')}, asked for tier {config.data_tier}; "
                           "choose another output path")
    manifest = json.loads(attrs["manifest"])
    if manifest["config"] != config.manifest("", "")["config"]:
        raise DatasetError(f"{output} exists with different generation arguments; choose another output path")
    log.info("%s is already complete: nothing to do", output)
    return {"presets": attrs["n_presets"], "rows": attrs["n_rows"], "generated": 0, "rejected": {},
            "rejection_rate": 0.0, "seconds": 0.0, "output": str(output)}
