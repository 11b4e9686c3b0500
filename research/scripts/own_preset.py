"""Score each target's own preset as the benchmark scores a method's result: its render in float (as the
benchmark did before 2026-12-03) and as heard (`inference.clips.as_heard`: through a 16-bit WAV and `prepare`,
like the target), beside the clip's noise floor (a second render of the target, prepared alike).

    PYTHONPATH=. python research/scripts/own_preset.py "Sirenengesang@48" "Tokyo@60" ...

Names are benchmark clip names of the "score" presets (`name@note`, key held 1.5 s). Results: research/benchmarks.md,
"A render scored as its target was heard".
"""

import sys

from datagen.preset import read_vital, shared_presets_dir
from inference.clips import as_heard, list_clips
from inference.metrics import score
from inference.objective import Objective, render_pool
from inference.predict import Pipeline


def main(names: list[str]) -> None:
    pipeline = Pipeline.from_checkpoint(None)
    folder = shared_presets_dir()
    pending = [c for c in list_clips([folder], features=pipeline.features, render=pipeline.render, split="score")
               if c.name in names]
    with render_pool(2, sample_rate=pipeline.render.sample_rate) as pool:
        for p in pending:
            clip = p.build()
            path = next(f for f in folder.rglob("*.vital") if f.stem == clip.name.split("@")[0])
            objective = Objective(clip.target.audio, note=clip.note, render=pipeline.render, key_held=clip.played)
            render = objective.renders([read_vital(path, registry=pipeline.registry)], pool=pool)[0].audio
            rows = {"floor": clip.floor, "float": render, "heard": as_heard(render, features=pipeline.features,
                                                                               level=clip.target.level)}
            for label, audio in rows.items():
                print(clip.name, label, {k: round(v, 3) for k, v in score(audio, clip.target.audio).items()})


if __name__ == "__main__":
    main(sys.argv[1:])
