"""`python -m inference benchmark`: how close each method's preset sounds to the target, against baselines.

Targets (`list_clips`, built one at a time as the run reaches them): WAV clips (prepared like `infer` prepares
them, at the detected note); `.vital` presets
rendered at stated MIDI notes; or the test split of a generated HDF5 data set (each row rendered at its note).
A rendered target is rendered a second time from a fresh Synth: the distance between the two renders is that
clip's noise floor (random phases, noise and unsynchronised LFOs make a preset differ from itself).

Methods, each giving one preset per clip (searches spend `budget` renders of the refinement objective):
- `init`: Vital's init preset (the floor every method should beat); `network`: the network's prediction;
- `<start>+<search>`: any searcher registered in `inference.search` from `init`, `network` or `proposals`
  (`inference.proposals`: network samples, bank neighbours, sampler draws), e.g. `network+cma`,
  `proposals+evolve` (what `infer --refine` does);
- `random` (= `none+random`): the best of `budget` presets drawn by the sampler of the model's tier;
  `cma-init` (= `init+cma`).
Budgets 200 / 500 / 2000 of a search come from one run of the largest budget, snapshotted on the way
(`refine(snapshots=...)`): the best of its first `budget` renders, which is where a run with that budget ends.

Every preset is rendered at the clip's note and key-held time by the render pool (random phase off) and scored
against the target with `inference.metrics` (multi-scale spectral distance, log-spectral distance, MFCC L1,
loudness L1).

Output folder: `clips.jsonl` (one line per clip, its records for every method x budget, appended as each clip
finishes: an interrupted run resumes at the clip it was scoring), `results.md` (means with bootstrap 95%
intervals), `results.png`, `summary.json`.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from datagen.console import ConfigError

if TYPE_CHECKING:
    from inference.audio import Target

log = logging.getLogger(__name__)

METHODS = ("init", "network", "random", "network+cma", "proposals+evolve")
UNSEARCHED = ("init", "network", "mean")  # scored as they are
STARTS = ("init", "network", "proposals")  # what a search starts from ("none" for random search)
ALIASES = {"random": "none+random", "cma-init": "init+cma"}  # the names of earlier recorded results
BUDGETS = (0, 200, 500, 2000)
NOTES = (48, 60, 72)


class TargetError(ValueError):
    """A benchmark input that cannot be scored: a missing path, a folder with nothing to score, a file of another
    kind, two targets with one name. One line for the user."""


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig:
    methods: tuple[str, ...] = METHODS  # "init", "network", or "<start>+<searcher>" (see parse_method)
    budgets: tuple[int, ...] = BUDGETS  # 0 scores the methods that do not search; searches run the others
    threads: int | None = None  # render processes; None: one per core
    seed: int = 0
    proposals: int = 32  # starts of the "proposals+..." methods (inference.proposals), within the budget
    fixed_key_held: float | None = None  # searches and scoring render with the key held this long instead of the
    #                                      clip's detected key-held time (what every search did before it was read)

    def __post_init__(self):
        if not self.methods:
            raise ConfigError("no methods given")
        for m in self.methods:
            parse_method(m)
        if not self.budgets or any(b < 0 for b in self.budgets):
            raise ConfigError(f"budgets must be >= 0, got {self.budgets}")
        if any(0 < b < 2 for b in self.budgets):
            raise ConfigError("a search budget must be at least 2 renders (the start and one candidate)")

    @property
    def search_budgets(self) -> tuple[int, ...]:
        return tuple(sorted(b for b in set(self.budgets) if b > 0))


def _key_held(clip, config: BenchmarkConfig) -> float:
    return config.fixed_key_held if config.fixed_key_held is not None else clip.target.key_held


def parse_method(method: str) -> tuple[str, str | None]:
    """(start, searcher): "init" / "network" / "mean" (the network's predict-the-mean constant,
    `Pipeline.mean_preset`) -> (that, None): scored as they are; "<start>+<searcher>" with
    start in STARTS (or "none") and a searcher registered in inference.search; "random" and "cma-init" are the
    names of "none+random" and "init+cma". ConfigError for anything else."""
    from inference.search import SEARCHERS

    name = ALIASES.get(method, method)
    if name in UNSEARCHED:
        return name, None
    start, plus, searcher = name.partition("+")
    if plus and start in (*STARTS, "none") and searcher in SEARCHERS:
        return start, searcher
    raise ConfigError(f"method {method!r}: use init, network, mean, random, or <start>+<search> with start in "
                     f"{', '.join(STARTS)} and search in {', '.join(SEARCHERS)}")


@dataclass(frozen=True)
class Clip:
    name: str  # unique within the run: the file stem (and "@note" for a rendered preset)
    target: Target  # what the network hears and every method is scored against
    note: int  # MIDI note every method renders at
    floor: np.ndarray | None  # (samples,) a second render of the target preset, prepared alike; None for a WAV
    key_held: float | None = None  # seconds the key was held when the target was rendered (None: a WAV)

    @property
    def played(self) -> float:
        """The key-held time every method's preset is scored at: the true one when known, else the detected."""
        return self.key_held if self.key_held is not None else self.target.key_held


@dataclass(frozen=True)
class PendingClip:
    name: str
    build: Callable[[], Clip | None]  # reads or renders the target (None: a preset skipped with a warning)


# ---- targets -----------------------------------------------------------------------------------------------


def wav_target(audio: np.ndarray, *, features, name: str = "clip", prepare=None):
    """audio (samples,) at features.sample_rate -> the Target `prepare` (default `inference.audio.prepare`, what
    `infer` runs) makes of it written as a 16-bit WAV file, as a producer's clip would reach the tool."""
    from inference.export import write_wav

    if prepare is None:
        from inference.audio import prepare
    with tempfile.TemporaryDirectory() as tmp:
        path = write_wav(audio, Path(tmp) / f"{name}.wav", sample_rate=features.sample_rate)
        return prepare(path, features=features)


def _prepared(audio: np.ndarray, *, features, note: int | None, name: str):
    """`wav_target`, at `note` when the note is known (a rendered preset) instead of the detected one."""
    from inference.pitch import Note, midi_to_hz

    target = wav_target(audio, features=features, name=name)
    if note is not None and note != target.note.midi:
        target = replace(target, note=Note(midi=note, cents=0.0, hz=midi_to_hz(note), pitched=True,
                                           n_notes=1, message=None))
    return target


def _render_twice(preset, *, note: int, features, render,
                  key_held: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two mono renders from fresh Synths, as the preset stands (random phases included), `features.duration`
    long at the sample rate and velocity of `render` (the checkpoint's `datagen.render.RenderConfig`), the key
    held `key_held` s (None: as `render` holds it)."""
    from datagen.render import Renderer

    held = key_held if key_held is not None else render.note_length
    config = replace(render, render_length=features.duration, note_length=held, mono=True)
    return tuple(Renderer(config).render(preset, note=note) for _ in range(2))


def _from_preset(preset, *, name: str, note: int, features, render, key_held: float | None = None) -> Clip:
    """preset: a Preset or `.vital` text. The target and its floor go through a 16-bit WAV, as a clip would
    (so the key-held time the searches use is the detected one, as for any clip). render, key_held: as in
    `_render_twice`."""
    key_held = key_held if key_held is not None else render.note_length
    first, second = _render_twice(preset, note=note, features=features, render=render, key_held=key_held)
    return Clip(name=name, target=_prepared(first, features=features, note=note, name=name), note=note,
                floor=_prepared(second, features=features, note=note, name=name).audio, key_held=key_held)


def list_clips(inputs, *, features, render, notes=NOTES, max_clips: int | None = None, seed: int = 0,
               split: str | None = None, key_held: tuple[float, ...] = (1.5,)) -> list[PendingClip]:
    """inputs: paths of WAV files, `.vital` files, folders of either (searched recursively), or `.h5` data sets
    (their test split). features, render: the checkpoint's (`Pipeline.features`, `Pipeline.render`): rendered
    targets are `features.duration` long at the sample rate and velocity of `render`. split: keep only the
    `.vital` files of a folder that its README.md lists in that half of the build / score split
    (`datagen.preset.shared_split`; benchmarks score on "score"). key_held: seconds the key is held in the
    renders of `.vital` targets, one target per value (short notes: plucks, stabs; names get "~0.3s" unless the
    only value is the default 1.5 s).
    max_clips: keep a random subset of this many targets, drawn with `seed`. Nothing is
    read or rendered yet: `PendingClip.build()` does it (a preset that vita refuses or that is silent at a note
    is then skipped with a warning; a bad WAV raises AudioError). Bad inputs raise TargetError, an unusable data
    set DatasetError (one line)."""
    from inference.audio import AUDIO_SUFFIXES

    jobs = []  # (name, () -> Clip): targets are listed first and built after subsetting
    for path in map(Path, inputs):
        if not path.exists():
            raise TargetError(f"{path}: no such file or folder")
        if path.suffix in (".h5", ".hdf5"):
            jobs += _dataset_jobs(path, features=features, render=render)
            continue
        files = [path] if path.is_file() else sorted(
            f for f in path.rglob("*") if f.suffix.lower() in (".vital", *AUDIO_SUFFIXES))
        if split is not None and path.is_dir():
            from datagen.preset import PresetError, shared_split

            try:
                listed = {p.resolve() for p in shared_split(split, folder=path)}
            except PresetError as e:
                raise TargetError(str(e)) from None
            files = [f for f in files if f.suffix.lower() != ".vital" or f.resolve() in listed]
        if not files:
            raise TargetError(f"{path}: no .vital or audio files")
        for f in files:
            if f.suffix.lower() == ".vital":
                for note in notes:
                    for held in key_held:
                        name = f"{f.stem}@{note}" + ("" if tuple(key_held) == (1.5,) else f"~{held:g}s")
                        jobs.append((name, _preset_job(f, name=name, note=note, features=features, render=render,
                                                       key_held=held)))
            elif f.suffix.lower() in AUDIO_SUFFIXES:
                jobs.append((f.stem, _wav_job(f, features=features)))
            else:
                raise TargetError(f"{f}: not a .vital, audio or .h5 file")
    names = [name for name, _ in jobs]
    for name in names:
        if names.count(name) > 1:
            raise TargetError(f"two targets are both named {name!r}; rename one")
    if max_clips and len(jobs) > max_clips:  # a seeded random subset, in input order (not the first N files)
        keep = set(np.random.default_rng(seed).choice(len(jobs), max_clips, replace=False).tolist())
        jobs = [job for i, job in enumerate(jobs) if i in keep]
    return [PendingClip(name=name, build=build) for name, build in jobs]


def _wav_job(path: Path, *, features):
    def build() -> Clip:
        from inference.audio import prepare

        target = prepare(path, features=features)
        return Clip(name=path.stem, target=target, note=target.note.midi, floor=None)
    return build


def _preset_job(path: Path, *, name: str, note: int, features, render, key_held: float):
    def build() -> Clip | None:
        text = path.read_text(encoding="utf-8", errors="replace")  # the file as Vital reads it: the real sound,
        try:  # custom LFO shapes and sample wavetables included
            return _from_preset(text, name=name, note=note, features=features, render=render, key_held=key_held)
        except Exception as e:  # a preset vita refuses, or a silent render at this note
            log.warning("%s: skipped (%s)", name, str(e).splitlines()[0])
            return None
    return build


def _dataset_jobs(path: Path, *, features, render, split: str = "test") -> list:
    """Rows of a split (the test split: rows no model was trained on), each rendered at its own note, the key
    held as `render` holds it."""
    import h5py

    from datagen.dataset import SPLITS, DatasetError, load_catalog, preset_from_row, read_attrs
    from datagen.registry import load_registry

    attrs = read_attrs(path)
    registry, catalog = load_registry(), load_catalog(attrs)
    with h5py.File(path, "r") as f:
        rows = np.flatnonzero(f["split"][:] == SPLITS.index(split))
        if len(rows) == 0:
            raise DatasetError(f"{path}: no rows in the {split} split")
        labels = {k: f[k][rows] for k in ("continuous", "categorical", "wavetable", "modulation", "midi_note")}

    def job(i: int, row: int):
        def build() -> Clip:
            truth = preset_from_row({k: v[i] for k, v in labels.items()}, registry=registry, catalog=catalog)
            return _from_preset(truth, name=f"{path.stem}#{row}", note=int(labels["midi_note"][i]), features=features,
                                render=render)
        return f"{path.stem}#{row}", build
    return [job(i, row) for i, row in enumerate(rows.tolist())]


# ---- methods -----------------------------------------------------------------------------------------------


def _search(method: str, clip: Clip, *, starts: list, pipeline, budgets: tuple[int, ...], pool, seed: int,
            key_held: float) -> dict:
    """One registered searcher (the part of `method` after "+") from `starts`, snapshotted at every budget;
    budget -> (preset, loss, evals, s)."""
    from inference.refine import RefineConfig, refine

    r = refine(starts, clip.target.audio, note=clip.note, render=pipeline.render,
               key_held=key_held, importance=pipeline.importance,
               registry=pipeline.registry, catalog=pipeline.catalog, tier=pipeline.tier,
               config=RefineConfig(evals=max(budgets), seed=seed, search=parse_method(method)[1]), pool=pool,
               show_progress=False, snapshots=budgets)
    return {b: (s.preset, s.loss, s.evaluations, s.seconds) for b, s in r.snapshots.items()}


def run_clip(clip: Clip, *, pipeline, config: BenchmarkConfig, pool=None, bank=None, on_step=None) -> dict:
    """Every method at every budget on one clip: {clip, note, floor (metrics of the second render, or None),
    records: one per (method, budget)}. pool: a RenderPool to share across clips (default: one for this clip).
    on_step(method) is called as each method starts (progress)."""
    from inference.objective import render_pool

    with render_pool(config.threads, sample_rate=pipeline.render.sample_rate, pool=pool) as pool:
        return _run_clip(clip, pipeline=pipeline, config=config, pool=pool, bank=bank, on_step=on_step)


def _run_clip(clip: Clip, *, pipeline, config: BenchmarkConfig, pool, bank, on_step) -> dict:
    from datagen.preset import init_preset
    from inference.metrics import score
    from inference.objective import FAILED_LOSS, Objective
    from inference.proposals import proposals

    objective = Objective(clip.target.audio, note=clip.note, render=pipeline.render,
                          key_held=clip.played)  # scoring: as the clip was played, whatever the search used
    floor = score(clip.floor, clip.target.audio) if clip.floor is not None else None
    t0 = time.perf_counter()
    prediction = pipeline.predict(clip.target)
    predict_s = time.perf_counter() - t0
    starts = {"init": ([init_preset(pipeline.registry)], 0.0), "network": ([prediction.preset], predict_s),
              "mean": ([pipeline.mean_preset()], 0.0), "none": ([], 0.0)}
    budgets = config.search_budgets
    results = {}  # (method, budget) -> (preset, objective loss (None: from the scoring render), evaluations, s)
    for method in config.methods:
        if on_step is not None:
            on_step(method)
        start, searcher = parse_method(method)
        if searcher is None:
            if 0 in config.budgets:
                (preset,), seconds = starts[start]
                results[(method, 0)] = (preset, None, 0, seconds)
            continue
        if not budgets:
            continue
        if start == "proposals" and start not in starts:  # once per clip, whichever searches start from them
            t1 = time.perf_counter()
            found = proposals(clip.target, pipeline, n=min(config.proposals, max(budgets)), prediction=prediction,
                              bank=bank, seed=config.seed)
            starts["proposals"] = (found, predict_s + time.perf_counter() - t1)
        presets, seconds = starts[start]
        for b, (p, loss, n, s) in _search(method, clip, starts=presets, pipeline=pipeline, budgets=budgets,
                                          pool=pool, seed=config.seed, key_held=_key_held(clip, config)).items():
            results[(method, b)] = (p, loss, n, s + seconds)
    records = []
    keys = list(results)
    rendered = objective.renders([results[k][0] for k in keys], pool=pool)
    for (method, budget), r in zip(keys, rendered):
        preset, loss, evaluations, seconds = results[(method, budget)]
        audio = r.audio  # one render scores the preset and, for the methods that did not search, gives its objective
        if not r.ok:  # a preset vita cannot render scores nothing, and says so
            log.warning("%s: %s @ %d did not render (%s)", clip.name, method, budget, r.error)
            metrics, loss = None, FAILED_LOSS if loss is None else loss
        else:
            metrics = score(audio, clip.target.audio)
            loss = objective.distance(audio) if loss is None else loss
        records.append({"method": method, "budget": budget, "evaluations": evaluations, "objective": loss,
                        "seconds": seconds, "metrics": metrics})
    return {"clip": clip.name, "note": clip.note, "floor": floor, "records": records}


# ---- the run -----------------------------------------------------------------------------------------------


def run(clips: list[PendingClip], *, pipeline, config: BenchmarkConfig, out_dir, bank=None,
        show_progress: bool = True) -> dict:
    """Build and score every clip (skipping those `clips.jsonl` in out_dir already holds), then write the
    summaries."""
    from tqdm import tqdm

    from training.checkpoint import CheckpointError

    if "mean" in config.methods and pipeline.baseline is None:
        raise CheckpointError(f"{pipeline.path}: holds no predict-the-mean baseline (trained before the trainer "
                              "stored one), so the method 'mean' cannot run")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / "clips.jsonl"
    if jsonl.is_file():  # a line cut short by an interruption goes, or the next clip's would be glued to it
        text = jsonl.read_bytes()
        if text and not text.endswith(b"\n"):
            jsonl.write_bytes(text[:text.rfind(b"\n") + 1])
            log.warning("%s: dropped an unfinished last line", jsonl)
    done = {r["clip"] for r in read_lines(jsonl)}
    todo = [c for c in clips if c.name not in done]
    if done:
        log.info("resuming: %d of %d clips already scored in %s", len(clips) - len(todo), len(clips), jsonl)
    from datagen.atomic import write_text
    from inference.objective import render_pool

    bar = tqdm(todo, desc="benchmark", unit="clip", disable=not show_progress, dynamic_ncols=True)
    with render_pool(config.threads, sample_rate=pipeline.render.sample_rate) as pool:  # one for the run
        for pending in bar:
            bar.set_postfix_str(f"{pending.name}: target")
            clip = pending.build()
            if clip is None:
                continue
            line = run_clip(clip, pipeline=pipeline, config=config, pool=pool, bank=bank,
                            on_step=lambda method: bar.set_postfix_str(f"{clip.name}: {method}"))
            with jsonl.open("a") as f:  # one clip per line: an interrupted run loses at most the clip in flight
                f.write(json.dumps(line) + "\n")
    names = {c.name for c in clips}
    summary = summarise([c for c in read_lines(jsonl) if c["clip"] in names])
    write_text(out_dir / "summary.json", json.dumps(summary, indent=1) + "\n")
    write_text(out_dir / "results.md", markdown(summary))
    plot(summary, out_dir / "results.png")
    return summary


def read_lines(path: Path) -> list[dict]:
    """The clips of a clips.jsonl; a last line cut short by an interruption is dropped."""
    if not Path(path).is_file():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("%s: dropped an unfinished line", path)
    return records


def summarise(clips: list[dict]) -> dict:
    """clips: run_clip's dicts. Per (method, budget): mean and bootstrap 95% interval of each metric and of
    the seconds; the noise floor (over the clips that have one); the goals of issue 7 as ratios of means."""
    from inference.metrics import METRICS, bootstrap_ci

    rows = {}
    for c in clips:
        for r in c["records"]:
            rows.setdefault((r["method"], r["budget"]), []).append(r)
    table = []
    order = list(dict.fromkeys(r["method"] for c in clips for r in c["records"]))  # as the run listed them
    for (method, budget), rs in sorted(rows.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        entry = {"method": method, "budget": budget, "clips": len(rs),
                 "failed": sum(r["metrics"] is None for r in rs),
                 "seconds": bootstrap_ci([r["seconds"] for r in rs])}
        for m in METRICS:
            entry[m] = bootstrap_ci([r["metrics"][m] if r["metrics"] else np.nan for r in rs])
        table.append(entry)
    floors = [c["floor"] for c in clips if c["floor"]]
    floor = {m: bootstrap_ci([f[m] for f in floors]) for m in METRICS} if floors else None
    mss = {(e["method"], e["budget"]): e["mss"]["mean"] for e in table}
    goals = {}
    if ("network", 0) in mss and ("init", 0) in mss:
        goals["network_vs_init_mss"] = mss[("network", 0)] / mss[("init", 0)]
    if ("network", 0) in mss and ("mean", 0) in mss:
        goals["network_vs_mean_mss"] = mss[("network", 0)] / mss[("mean", 0)]
    if ("network+cma", 500) in mss and ("cma-init", 500) in mss:
        goals["network_cma_vs_cma_init_500_mss"] = mss[("network+cma", 500)] / mss[("cma-init", 500)]
    return {"clips": len(clips), "table": table, "noise_floor": floor, "goals": goals}


def _ci(c: dict, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(c["mean"]) else \
        f"{c['mean']:.{digits}f} [{c['low']:.{digits}f}, {c['high']:.{digits}f}]"


def markdown(summary: dict) -> str:
    from inference.metrics import METRICS

    lines = [f"Clips: {summary['clips']}. Means with bootstrap 95% intervals; lower is better.", "",
             "| method | budget | " + " | ".join(METRICS) + " | seconds / clip |",
             "|---|---:|" + "---|" * (len(METRICS) + 1)]
    for e in summary["table"]:
        failed = f" ({e['failed']} failed)" if e["failed"] else ""
        lines.append(f"| {e['method']}{failed} | {e['budget']} | " + " | ".join(_ci(e[m]) for m in METRICS)
                     + f" | {_ci(e['seconds'], 2)} |")
    if summary["noise_floor"]:
        lines.append("| *noise floor* (target vs itself) | | "
                     + " | ".join(_ci(summary["noise_floor"][m]) for m in METRICS) + " | |")
    goals = summary["goals"]
    lines.append("")
    if "network_vs_init_mss" in goals:
        lines.append(f"- network alone / init preset, multi-scale spectral distance: "
                     f"{goals['network_vs_init_mss']:.3f} (below 1: the network is better)")
    if "network_vs_mean_mss" in goals:
        g = goals["network_vs_mean_mss"]
        lines.append(f"- network alone / its predict-the-mean constant, multi-scale spectral distance: {g:.3f} "
                     f"({(1 - g) * 100:.1f}% lower; goal >= 15%)")
    if "network_cma_vs_cma_init_500_mss" in goals:
        g = goals["network_cma_vs_cma_init_500_mss"]
        lines.append(f"- network+cma / cma-init at 500 evaluations: {g:.3f} ({(1 - g) * 100:.1f}% lower; goal >= 25%)")
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> Path:
    """Multi-scale spectral distance against the budget, one line per method, 95% intervals as bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from datagen.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for method in dict.fromkeys(e["method"] for e in summary["table"]):
        es = [e for e in summary["table"] if e["method"] == method]
        x = [max(e["budget"], 1) for e in es]  # budget 0 drawn at 1 on the log axis
        y = [e["mss"]["mean"] for e in es]
        lo, hi = [e["mss"]["low"] for e in es], [e["mss"]["high"] for e in es]
        ax.errorbar(x, y, yerr=[np.subtract(y, lo), np.subtract(hi, y)], marker="o", capsize=3, label=method)
    if summary["noise_floor"]:
        ax.axhline(summary["noise_floor"]["mss"]["mean"], color="grey", ls="--", label="noise floor")
    ax.set_xscale("log")
    ax.set_xlabel("renders spent (budget; 0 drawn at 1)")
    ax.set_ylabel("multi-scale spectral distance")
    ax.set_title(f"{summary['clips']} clips, means with 95% intervals")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path
