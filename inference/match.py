"""The main job, as one library call: a clip -> a predicted, optionally refined, preset.

`match(path, pipeline, refine=RefineConfig(...))` is what `infer` runs per input and what the demo runs per
upload (no second implementation): prepare the clip (`audio.prepare`), predict (`Pipeline.predict`), refine
(`refine.refine`) at the detected note.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference.audio import Target
    from inference.predict import Prediction
    from inference.search import Refinement


@dataclass(frozen=True)
class Match:
    source: str
    target: Target
    prediction: Prediction
    refinement: Refinement | None  # None without --refine
    timings: dict[str, float] = field(default_factory=dict)  # seconds: prepare, predict, refine

    @property
    def preset(self):
        """The final preset: refined when refinement ran, else the network's prediction."""
        return self.refinement.preset if self.refinement is not None else self.prediction.preset

    @property
    def note(self):
        return self.target.note


def match(path: str | Path, pipeline, *, refine=None, bank=None, show_progress: bool = True,
          on_progress=None) -> Match:
    """refine: a RefineConfig to refine with, or None. bank: a datagen.bank.Bank whose nearest entries join the
    proposals (inference.proposals.load_bank()). on_progress(done, total, best_loss) during refinement.
    Raises inference.audio.AudioError (one line) for a clip that cannot be used."""
    from inference.audio import prepare
    from inference.proposals import proposals
    from inference.refine import refine as run_refine

    t0 = time.perf_counter()
    target = prepare(path, features=pipeline.features)
    t1 = time.perf_counter()
    prediction = pipeline.predict(target)
    t2 = time.perf_counter()
    timings = {"prepare": t1 - t0, "predict": t2 - t1}
    refinement = None
    if refine is not None:
        starts = proposals(target, pipeline, n=min(refine.proposals, refine.evals), prediction=prediction,
                           bank=bank, seed=refine.seed)
        refinement = run_refine(starts, target.audio, note=target.note.midi, render=pipeline.render,
                                key_held=target.key_held, importance=pipeline.importance,
                                registry=pipeline.registry, catalog=pipeline.catalog, tier=pipeline.draw_tier,
                                config=refine, show_progress=show_progress, on_progress=on_progress)
        timings["refine"] = refinement.seconds
    return Match(source=str(path), target=target, prediction=prediction, refinement=refinement, timings=timings)
