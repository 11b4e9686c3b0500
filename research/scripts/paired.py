"""Paired comparison of two benchmark runs on the same clips: the ratio of mean metrics (A / B) with a paired
bootstrap 95% interval (clips resampled together) and on how many clips A is lower.

    python research/scripts/paired.py A/clips.jsonl METHOD[@BUDGET] B/clips.jsonl METHOD[@BUDGET]
e.g. python research/scripts/paired.py data/r15/sound_shipped/clips.jsonl network data/r15/sound_old/clips.jsonl network
"""

import json
import sys

import numpy as np

METRICS = ("mss", "lsd", "mfcc_l1", "loudness_l1")


def scores(path: str, spec: str) -> dict[str, dict]:
    """clip -> metrics of the record of `spec` ("method" or "method@budget") in a benchmark's clips.jsonl."""
    method, _, budget = spec.partition("@")
    out = {}
    for line in open(path):
        clip = json.loads(line)
        for r in clip["records"]:
            if r["method"] == method and (not budget or r["budget"] == int(budget)) and r["metrics"]:
                out[clip["clip"]] = r["metrics"]
    return out


def main(a_path: str, a_spec: str, b_path: str, b_spec: str, n: int = 2000) -> None:
    a, b = scores(a_path, a_spec), scores(b_path, b_spec)
    clips = sorted(set(a) & set(b))
    picks = np.random.default_rng(0).integers(0, len(clips), size=(n, len(clips)))
    print(f"{a_spec} ({a_path}) / {b_spec} ({b_path}), {len(clips)} clips in both")
    for m in METRICS:
        x = np.array([a[c][m] for c in clips])
        y = np.array([b[c][m] for c in clips])
        ratios = x[picks].mean(1) / y[picks].mean(1)
        low, high = np.quantile(ratios, [0.025, 0.975])
        print(f"  {m:12s} {x.mean():8.3f} / {y.mean():8.3f} = {x.mean() / y.mean():.3f} [{low:.3f}, {high:.3f}], "
              f"lower on {int((x < y).sum())} of {len(clips)}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
