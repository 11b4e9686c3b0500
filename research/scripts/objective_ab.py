"""A/B of search objectives on tuning clips: "score" presets none of whose clips is among the benchmark's 24
(`benchmark --split score --max-clips 24 --seed 0`), held 1.5 s or 0.3 s, a seeded pick of N.

    python research/scripts/objective_ab.py VARIANT [-n 10] [--budget 200] [--method proposals+portfolio] [--bank F]

VARIANT: "search" (`datagen.distances.SearchDistance`, the objective: four terms since 2026-12-03), "two-term"
(its mel and short-window terms, the objective before 2026-12-03; the twelfth session ran today's "search" as
"shape-tail"), "shape" (without the level envelope), "mel" (`MelSTFTDistance` alone, the objective before
2026-12-02), "wide" (two-term with linear FFT 256 / 1024 / 4096), "fine" (two-term with linear FFT 128 to 2048:
the short windows and the harmonics) or "heard" / "heard-mel" (candidates quantised at the target's level,
power floor 1e-8 in both terms / in the spectrum term only: `_hear_as_recorded`). Appends one JSON line per clip
(its benchmark record) to data/objective_ab/VARIANT_METHOD_BUDGET.jsonl (..._BUDGET_bank-STEM.jsonl with another
bank than the shipped one) and resumes there; compare two files
clip by clip. Results: research/benchmarks.md, "What the search listens to" ("fine": "Route moves in the
search, and a finer objective"; "heard": "A gain costs nothing"; "two-term", "shape": "The objective hears 100 dB
down").
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np


HEARD = {}  # "level": the recording level (Target.level) of the clip being searched, for the "heard" variant


def use_variant(name: str) -> None:
    """Make `inference.objective.Objective` search on the distance `name` (it imports SearchDistance per call)."""
    from functools import partial

    import datagen.distances as d

    two_term = _first_terms(d, 2)  # what "wide", "fine" and "heard" varied (they predate the deep terms)
    if name in ("heard", "heard-mel"):
        _hear_as_recorded(d, two_term, envelope_eps=1e-8 if name == "heard" else d.MelSTFTDistance.POWER_FLOOR)
        return
    variants = {"search": d.SearchDistance, "mel": d.MelSTFTDistance, "two-term": two_term,
                "shape": _first_terms(d, 3),
                "wide": partial(two_term, envelope_fft_sizes=(256, 1024, 4096)),
                "fine": partial(two_term, envelope_fft_sizes=(128, 256, 512, 1024, 2048))}
    d.SearchDistance = variants[name]


def _hear_as_recorded(d, two_term, *, envelope_eps: float) -> None:
    """The "heard" variants: each candidate quantised to 16 bits at the target's recording level (as the benchmark
    hears it, `inference.clips.as_heard`, less the trimming), then SearchDistance with auraloss's power floor
    (1e-8) instead of 1e-4 in its spectrum term, so it hears as far down as the target's quantisation noise, like
    mss; its envelope term at `envelope_eps` ("heard": 1e-8 too; "heard-mel": the usual 1e-4)."""
    import inference.objective as o
    from datagen.features import fit_length, rms

    class DeepSearchDistance(two_term):
        def __init__(self, *, sample_rate, envelope_fft_sizes=d.ShortSTFTDistance.FFT_SIZES):
            self.spectrum = d.MelSTFTDistance(sample_rate=sample_rate, eps=1e-8)
            self.envelope = d.ShortSTFTDistance(fft_sizes=envelope_fft_sizes, eps=envelope_eps)

    plain = o.Objective.distance

    def distance(self, audio):
        x = fit_length(np.asarray(audio, np.float32), self.n)
        r = rms(x)
        if HEARD.get("level") and np.isfinite(r) and r > 0:
            g = HEARD["level"] / r  # the render at the target's level, on the 16-bit grid, back at its own
            x = (np.round(x * g * 32767.0) / 32767.0 / g).astype(np.float32)
        return plain(self, x)

    d.SearchDistance = DeepSearchDistance
    o.Objective.distance = distance


def _first_terms(d, n: int):
    """A SearchDistance class that averages only its first `n` terms (spectrum, envelope, average spectrum, level
    envelope): "two-term" (n=2) is the objective before 2026-12-03, "shape" (n=3) leaves out the level envelope."""

    class FirstTerms(d.SearchDistance):
        def forward(self, input, target):
            terms = [getattr(self, k) for k in ("spectrum", "envelope", "shape", "level")[:n]]
            return sum(t(input, target) for t in terms) / n

    return FirstTerms


def tuning_clips(pipeline, *, n: int, seed: int = 1):
    from datagen.preset import shared_presets_dir
    from inference.clips import list_clips

    kw = dict(features=pipeline.features, render=pipeline.render, split="score")
    folder = [shared_presets_dir()]
    benchmark = {c.name.split("@")[0] for c in list_clips(folder, max_clips=24, seed=0, **kw)}
    clips = [c for c in list_clips(folder, key_held=(1.5, 0.3), **kw) if c.name.split("@")[0] not in benchmark]
    pick = np.random.default_rng(seed).choice(len(clips), size=min(n, len(clips)), replace=False)
    return [clips[i] for i in sorted(pick)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("variant", choices=["search", "mel", "wide", "fine", "heard", "heard-mel", "two-term", "shape"])
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--method", default="proposals+portfolio")
    parser.add_argument("--bank", default=None, help="a preset bank (.npz) instead of the shipped one")
    args = parser.parse_args()
    use_variant(args.variant)
    from inference.benchmark import BenchmarkConfig, run_clip
    from inference.predict import Pipeline
    from inference.proposals import load_bank

    pipeline, bank = Pipeline.from_checkpoint(None), load_bank(args.bank)
    config = BenchmarkConfig(methods=(args.method,), budgets=(args.budget,), seed=0)
    tag = f"_bank-{Path(args.bank).stem}" if args.bank else ""
    out = Path("data/objective_ab") / f"{args.variant}_{args.method}_{args.budget}{tag}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["clip"] for line in out.read_text().splitlines()} if out.exists() else set()
    for pending in tuning_clips(pipeline, n=args.n):
        if pending.name in done or (clip := pending.build()) is None:
            continue
        t0 = time.time()
        HEARD["level"] = clip.target.level
        record = run_clip(clip, pipeline=pipeline, config=config, bank=bank)["records"][0]
        with out.open("a") as f:
            f.write(json.dumps({"clip": clip.name, **record}) + "\n")
        print(clip.name, {k: round(v, 3) for k, v in record["metrics"].items()}, f"{time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
