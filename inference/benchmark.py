"""`python -m inference benchmark`: how close each method's preset sounds to the target, against baselines.

Targets: `inference.clips` (WAV clips, `.vital` presets rendered at stated MIDI notes, a data set's test split;
`list_clips`, built one at a time as the run reaches them; a rendered target's second render is its noise floor).

Methods, each giving one preset per clip (searches spend `budget` renders of the refinement objective):
- `init`: Vital's init preset (the floor every method should beat); `network`: the network's prediction;
- `<start>+<search>`: any searcher registered in `inference.search` from `init`, `network` or proposals
  (`inference.proposals`): `proposals` (network samples, bank neighbours, sampler draws), `samples` (the
  network's alone) or `draws` (the sampler's alone), e.g. `network+cma`, `proposals+portfolio` (what `infer
  --refine` does), `samples+evolve` against `draws+evolve` (does the network help a search?);
- `random` (= `none+random`): the best of `budget` presets drawn by the sampler of the model's tier;
  `cma-init` (= `init+cma`).
Budgets 200 / 500 / 2000 of a search come from one run of the largest budget, snapshotted on the way
(`refine(snapshots=...)`): the best of its first `budget` renders, which is where a run with that budget ends.

Every preset is rendered at the clip's note and key-held time by the render pool (random phase off), made what
the target was made (`inference.clips.as_heard`: at the target's recording level, a 16-bit WAV, trimmed, DC
removed) and scored against the target with `inference.metrics` (multi-scale spectral distance, log-spectral
distance, MFCC L1, loudness L1).

Output folder: `clips.jsonl` (one line per clip, its records for every method x budget, appended as each clip
finishes: an interrupted run resumes at the clip it was scoring), then the report (`inference.report`):
`results.md` (means with bootstrap 95% intervals), `results.png`, `summary.json`. With `keep_presets`, also
`presets/CLIP/METHOD@BUDGET.vital`: every scored preset, to listen to in Vital or to take apart (which control made
a search's pick sound far from its target), written before the clip's line, so a scored clip has its presets.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from datagen.console import ConfigError
from inference.clips import Clip, PendingClip
from inference.proposals import SOURCES
from inference.report import read_lines, write_report

log = logging.getLogger(__name__)

METHODS = ("init", "network", "random", "network+cma", "proposals+portfolio")
UNSEARCHED = ("init", "network", "mean")  # scored as they are
# the proposal starts (`inference.proposals`, `BenchmarkConfig.proposals` presets) and their sources
PROPOSED = {"proposals": SOURCES, "samples": ("network",), "draws": ("sampler",)}
STARTS = ("init", "network", *PROPOSED)  # what a search starts from ("none" for random search)
ALIASES = {"random": "none+random", "cma-init": "init+cma"}  # the names of earlier recorded results
BUDGETS = (0, 200, 500, 2000)


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig:
    methods: tuple[str, ...] = METHODS  # "init", "network", or "<start>+<searcher>" (see parse_method)
    budgets: tuple[int, ...] = BUDGETS  # 0 scores the methods that do not search; searches run the others
    threads: int | None = None  # render processes; None: one per core
    seed: int = 0
    proposals: int = 32  # starts of the "proposals+..." methods (inference.proposals), within the budget
    fixed_key_held: float | None = None  # searches and scoring render with the key held this long instead of the
    #                                      clip's detected key-held time (what every search did before it was read)
    keep_presets: bool = False  # also write every scored preset (`presets_dir`), not only its scores

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


# ---- methods -----------------------------------------------------------------------------------------------


def _search(method: str, clip: Clip, *, starts: list, pipeline, budgets: tuple[int, ...], pool, seed: int,
            key_held: float) -> dict:
    """One registered searcher (the part of `method` after "+") from `starts`, snapshotted at every budget;
    budget -> (preset, loss, evals, s)."""
    from inference.refine import RefineConfig, refine

    r = refine(starts, clip.target.audio, note=clip.note, render=pipeline.render,
               key_held=key_held, importance=pipeline.importance,
               registry=pipeline.registry, catalog=pipeline.catalog, tier=pipeline.draw_tier,
               config=RefineConfig(evals=max(budgets), seed=seed, search=parse_method(method)[1]), pool=pool,
               show_progress=False, snapshots=budgets)
    return {b: (s.preset, s.loss, s.evaluations, s.seconds) for b, s in r.snapshots.items()}


def run_clip(clip: Clip, *, pipeline, config: BenchmarkConfig, pool=None, bank=None, on_step=None,
             presets: Path | None = None) -> dict:
    """Every method at every budget on one clip: {clip, note, floor (metrics of the second render, or None),
    records: one per (method, budget)}. pool: a RenderPool to share across clips (default: one for this clip).
    on_step(method) is called as each method starts (progress). presets: a folder to write each scored preset
    to, as METHOD@BUDGET.vital (None: none written)."""
    from inference.objective import render_pool

    with render_pool(config.threads, sample_rate=pipeline.render.sample_rate, pool=pool) as pool:
        return _run_clip(clip, pipeline=pipeline, config=config, pool=pool, bank=bank, on_step=on_step,
                         presets=presets)


def _run_clip(clip: Clip, *, pipeline, config: BenchmarkConfig, pool, bank, on_step, presets) -> dict:
    from inference.metrics import score

    floor = score(clip.floor, clip.target.audio) if clip.floor is not None else None
    results = _method_presets(clip, pipeline=pipeline, config=config, pool=pool, bank=bank, on_step=on_step)
    records = _records(clip, results, pipeline=pipeline, pool=pool)
    if presets is not None:
        _write_presets(clip, results, records, folder=presets, registry=pipeline.registry)
    return {"clip": clip.name, "note": clip.note, "floor": floor, "records": records}


def presets_dir(out_dir: Path, clip_name: str) -> Path:
    """Where a run with `keep_presets` writes a clip's presets: OUT/presets/CLIP (a path separator in the clip's
    name becomes "_")."""
    return Path(out_dir) / "presets" / clip_name.replace("/", "_").replace("\\", "_")


def _write_presets(clip: Clip, results: dict, records: list[dict], *, folder: Path, registry) -> None:
    """Each (method, budget)'s preset as folder/METHOD@BUDGET.vital, named in Vital after the clip, the method and
    its mss (atomic writes: a run killed mid-clip leaves no half-written file, and its rerun rewrites them)."""
    from inference.export import export

    folder.mkdir(parents=True, exist_ok=True)
    for r in records:
        preset = results[(r["method"], r["budget"])][0]
        mss = f"mss {r['metrics']['mss']:.3f}" if r["metrics"] else "did not render"
        export(preset, folder / f"{r['method']}@{r['budget']}.vital", registry=registry,
               name=f"{clip.name} {r['method']}@{r['budget']}",
               comments=f"inference benchmark: {r['method']} at {r['budget']} renders on {clip.name}, {mss}")


def _method_presets(clip: Clip, *, pipeline, config: BenchmarkConfig, pool, bank, on_step) -> dict:
    """Every method's preset at every budget: (method, budget) -> (preset, objective loss (None: from the scoring
    render), evaluations, seconds spent including the start's)."""
    from datagen.preset import init_preset
    from inference.proposals import proposals

    t0 = time.perf_counter()
    prediction = pipeline.predict(clip.target)
    predict_s = time.perf_counter() - t0
    starts = {"init": ([init_preset(pipeline.registry)], 0.0), "network": ([prediction.preset], predict_s),
              "mean": ([pipeline.mean_preset()], 0.0), "none": ([], 0.0)}
    budgets = config.search_budgets
    results = {}
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
        if start in PROPOSED and start not in starts:  # once per clip, whichever searches start from them
            t1 = time.perf_counter()
            found = proposals(clip.target, pipeline, n=min(config.proposals, max(budgets)), prediction=prediction,
                              bank=bank, seed=config.seed, sources=PROPOSED[start])
            starts[start] = (found, predict_s + time.perf_counter() - t1)
        presets, seconds = starts[start]
        for b, (p, loss, n, s) in _search(method, clip, starts=presets, pipeline=pipeline, budgets=budgets,
                                          pool=pool, seed=config.seed, key_held=_key_held(clip, config)).items():
            results[(method, b)] = (p, loss, n, s + seconds)
    return results


def _records(clip: Clip, results: dict, *, pipeline, pool) -> list[dict]:
    """`_method_presets`' results, each rendered once as the clip was played (whatever key-held time the search
    used) and scored: one record per (method, budget), in the order of `results`."""
    from inference.clips import as_heard
    from inference.metrics import score
    from inference.objective import FAILED_LOSS, Objective

    objective = Objective(clip.target.audio, note=clip.note, render=pipeline.render, key_held=clip.played)
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
            metrics = score(as_heard(audio, features=pipeline.features, level=clip.target.level),  # like the target
                           clip.target.audio)
            loss = objective.distance(audio) if loss is None else loss
        records.append({"method": method, "budget": budget, "evaluations": evaluations, "objective": loss,
                        "seconds": seconds, "metrics": metrics})
    return records


# ---- the run -----------------------------------------------------------------------------------------------


def run(clips: list[PendingClip], *, pipeline, config: BenchmarkConfig, out_dir, bank=None,
        show_progress: bool = True) -> dict:
    """Build and score every clip (skipping those `clips.jsonl` in out_dir already holds), then write the
    report (`inference.report.write_report`); returns its summary."""
    from tqdm import tqdm

    from inference.objective import render_pool
    from training.checkpoint import CheckpointError

    if "mean" in config.methods and pipeline.baseline is None:
        raise CheckpointError(f"{pipeline.path}: holds no predict-the-mean baseline (trained before the trainer "
                              "stored one), so the method 'mean' cannot run")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl = out_dir / "clips.jsonl"
    todo = _resume(jsonl, clips)
    bar = tqdm(todo, desc="benchmark", unit="clip", disable=not show_progress, dynamic_ncols=True)
    with render_pool(config.threads, sample_rate=pipeline.render.sample_rate) as pool:  # one for the run
        for pending in bar:
            bar.set_postfix_str(f"{pending.name}: target")
            clip = pending.build()
            if clip is None:
                continue
            line = run_clip(clip, pipeline=pipeline, config=config, pool=pool, bank=bank,
                            on_step=lambda method: bar.set_postfix_str(f"{clip.name}: {method}"),
                            presets=presets_dir(out_dir, clip.name) if config.keep_presets else None)
            with jsonl.open("a") as f:  # one clip per line: an interrupted run loses at most the clip in flight
                f.write(json.dumps(line) + "\n")
    names = {c.name for c in clips}
    return write_report([c for c in read_lines(jsonl) if c["clip"] in names], out_dir)


def _resume(jsonl: Path, clips: list[PendingClip]) -> list[PendingClip]:
    """The clips `jsonl` does not hold yet. A last line cut short by an interruption goes, or the next clip's
    would be glued to it."""
    if jsonl.is_file():
        text = jsonl.read_bytes()
        if text and not text.endswith(b"\n"):
            jsonl.write_bytes(text[:text.rfind(b"\n") + 1])
            log.warning("%s: dropped an unfinished last line", jsonl)
    done = {r["clip"] for r in read_lines(jsonl)}
    todo = [c for c in clips if c.name not in done]
    if done:
        log.info("resuming: %d of %d clips already scored in %s", len(clips) - len(todo), len(clips), jsonl)
    return todo
