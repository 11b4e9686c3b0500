"""Paired comparison of two benchmark runs on the same clips: the ratio of mean metrics (A / B) with a paired
bootstrap 95% interval (clips resampled together) and on how many clips A is lower.

    python research/scripts/paired.py A/clips.jsonl METHOD[@BUDGET] B/clips.jsonl METHOD[@BUDGET]
A file may also be one of research/scripts/objective_ab.py's (one record per line, with its clip).
e.g. python research/scripts/paired.py data/r15/sound_shipped/clips.jsonl network data/r15/sound_old/clips.jsonl network
"""

import json
import sys

from inference.metrics import METRICS, paired_ratio_ci


def scores(path: str, spec: str) -> dict[str, dict]:
    """clip -> metrics of the record of `spec` ("method" or "method@budget") in a benchmark's clips.jsonl (or
    in objective_ab.py's output, whose lines are one record each)."""
    method, _, budget = spec.partition("@")
    out = {}
    for line in open(path):
        clip = json.loads(line)
        for r in clip.get("records", [clip]):
            if r["method"] == method and (not budget or r["budget"] == int(budget)) and r["metrics"]:
                out[clip["clip"]] = r["metrics"]
    return out


def main(a_path: str, a_spec: str, b_path: str, b_spec: str) -> None:
    a, b = scores(a_path, a_spec), scores(b_path, b_spec)
    clips = sorted(set(a) & set(b))
    print(f"{a_spec} ({a_path}) / {b_spec} ({b_path}), {len(clips)} clips in both")
    for m in METRICS:
        x, y = [a[c][m] for c in clips], [b[c][m] for c in clips]
        r = paired_ratio_ci(x, y)
        print(f"  {m:12s} {sum(x) / len(x):8.3f} / {sum(y) / len(y):8.3f} = {r['ratio']:.3f} [{r['low']:.3f}, "
              f"{r['high']:.3f}], lower on {r['lower']} of {len(clips)}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
