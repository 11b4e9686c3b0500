"""Where a benchmark's mss comes from: its linear and log terms, the log term's share from the frames where the
target is quiet (more than QUIET_DB under its loudest frame), and its share from the bins where both clips lie
more than DEEP_DB under the target's loudest bin (what the search objective's power floor cannot hear,
`datagen.distances.MelSTFTDistance.POWER_FLOOR`), per method, from a run made with `--keep-presets` on .vital
targets.

    python research/scripts/mss_parts.py OUT_DIR -i ../shared/presets --split score --max-clips 24 --seed 0

The targets are rebuilt as the run built them (same arguments: a rendered target is a pure function of preset
and note), each kept preset is rendered as the benchmark renders it (at the clip's note and key-held time, random
phase off, in the render pool's pristine forks, then `as_heard`), and `MultiScaleSpectralDistance` is split into
its parts; the parts' sum is the record's mss (checked). Results: research/benchmarks.md, "The default budget
with the model that hears the note, and where mss comes from" (tenth session).
"""

import argparse
import json
from pathlib import Path

import numpy as np

QUIET_DB = 60.0  # a target frame this far under the target's loudest frame (same FFT size) counts as quiet
DEEP_DB = 70.0  # a bin this far under the target's loudest bin (same FFT size) is under the objective's floor


def parts(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """mss of input `a` against target `b` (both as heard) split: lin, log, log_quiet (the log term's
    contribution from frames where the target is quiet) and log_deep (from bins where both are deep); lin + log =
    mss."""
    from datagen.distances import MultiScaleSpectralDistance as M, _magnitudes

    a, b = M.normalise(a), M.normalise(b)
    n = max(a.size, b.size)
    a, b = np.pad(a, (0, n - a.size)), np.pad(b, (0, n - b.size))
    out = {"lin": 0.0, "log": 0.0, "log_quiet": 0.0, "log_deep": 0.0}
    for n_fft in M.FFT_SIZES:
        sa, sb = _magnitudes(a, n_fft), _magnitudes(b, n_fft)  # (frames, bins)
        log_bins = np.abs(np.log(sa + 1e-5) - np.log(sb + 1e-5))  # (frames, bins)
        log_frames = np.mean(log_bins, axis=-1)  # (frames,)
        deep = np.maximum(sa, sb) < sb.max() * 10 ** (-DEEP_DB / 20)
        level = 10 * np.log10(np.sum(sb ** 2, axis=-1) + 1e-30)
        quiet = level < level.max() - QUIET_DB
        k = len(M.FFT_SIZES)
        out["lin"] += np.mean(np.abs(sa - sb)) / k
        out["log"] += np.mean(log_frames) / k
        out["log_quiet"] += np.sum(log_frames[quiet]) / len(log_frames) / k
        out["log_deep"] += np.sum(log_bins[deep]) / log_bins.size / k
    return out


def main() -> None:
    from inference.clips import list_clips
    from inference.objective import render_pool
    from inference.predict import Pipeline
    from inference.report import read_lines

    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("-i", "--input", type=Path, required=True)
    ap.add_argument("--split", default=None)
    ap.add_argument("--max-clips", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pipeline = Pipeline.from_checkpoint(None)
    lines = {c["clip"]: c for c in read_lines(args.out_dir / "clips.jsonl")}
    clips = list_clips([args.input], features=pipeline.features, render=pipeline.render, split=args.split,
                       max_clips=args.max_clips, seed=args.seed)
    rows = []
    with render_pool(None, sample_rate=pipeline.render.sample_rate) as pool:
        for pending in clips:
            if pending.name in lines and (clip := pending.build()) is not None:
                rows += _clip_parts(clip, lines[pending.name]["records"], out_dir=args.out_dir, pipeline=pipeline,
                                    pool=pool)
    methods = sorted({r["method"] for r in rows})
    print(f"\nmeans over {len({r['clip'] for r in rows})} clips: lin + log (of which quiet frames, deep bins) = mss")
    for m in methods:
        got = [r for r in rows if r["method"] == m]
        lin, log, quiet, deep = (np.mean([r[k] for r in got]) for k in ("lin", "log", "log_quiet", "log_deep"))
        print(f"  {m:28s} {lin:.3f} + {log:.3f} ({quiet:.3f}, {deep:.3f}) = {lin + log:.3f}")


def _clip_parts(clip, records: list[dict], *, out_dir: Path, pipeline, pool) -> list[dict]:
    from datagen.preset import read_vital
    from inference.benchmark import presets_dir
    from inference.clips import as_heard
    from inference.objective import Objective

    kept = [(r, presets_dir(out_dir, clip.name) / f"{r['method']}@{r['budget']}.vital") for r in records]
    kept = [(r, path) for r, path in kept if path.is_file() and r["metrics"]]
    objective = Objective(clip.target.audio, note=clip.note, render=pipeline.render, key_held=clip.played)
    rendered = objective.renders([read_vital(path, registry=pipeline.registry) for _, path in kept], pool=pool)
    rows = []
    if clip.floor is not None:  # the target's second render (the noise floor), as the benchmark scores it
        rows.append({"clip": clip.name, "method": "floor", **parts(clip.floor, clip.target.audio), "objective": None})
    for (r, _), got in zip(kept, rendered):
        if not got.ok:
            continue
        p = parts(as_heard(got.audio, features=pipeline.features, level=clip.target.level), clip.target.audio)
        if abs(p["lin"] + p["log"] - r["metrics"]["mss"]) > 1e-3 * r["metrics"]["mss"]:
            print(f"  {clip.name} {r['method']}@{r['budget']}: parts sum {p['lin'] + p['log']:.4f}, "
                  f"record {r['metrics']['mss']:.4f} (rendered differently)")
        rows.append({"clip": clip.name, "method": f"{r['method']}@{r['budget']}", **p, "objective": r["objective"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


if __name__ == "__main__":
    main()
