"""What every searcher shares: the budget, the best preset so far, the anytime curve and the snapshots.

A searcher asks `tracker.evaluate(presets, base=...)` for losses; the tracker renders them through the pool
(`inference.objective.Objective.scores`), counts every render against the budget (a failed render counts too),
keeps the best preset, the best loss after each render (`history`: the anytime curve) and, for each budget in
`snapshots`, the best of the first `budget` renders: the state a run with that budget (same seed) ends in,
since searchers are deterministic and a run whose budget ends inside a batch evaluates that batch's first
candidates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datagen.preset import Preset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    preset: Preset
    loss: float
    evaluations: int
    seconds: float  # wall time from the start of the search to this state


@dataclass(frozen=True)
class Refinement:
    preset: Preset  # the best preset found (the first start when nothing beat it)
    initial_loss: float  # the first start's loss
    final_loss: float
    evaluations: int
    failures: int  # renders that failed and scored FAILED_LOSS
    seconds: float
    params: tuple[str, ...]  # the continuous parameters the search moved (its first start's)
    history: tuple[float, ...] = field(default=(), repr=False)  # best loss after each render: the anytime curve
    renders_per_s: float = 0.0
    # budget -> the state a run with `budget` renders (same seed) would have ended in
    snapshots: dict[int, Snapshot] = field(default_factory=dict, repr=False)
    method: str = ""
    restarts: int = 0  # how often the search started again from another start (it never stops early)


class Tracker:
    """Budgeted, best-keeping evaluation for one search. Not thread-safe (one searcher drives it)."""

    def __init__(self, objective, *, pool, budget: int, snapshots: tuple[int, ...] = (), timeout: float | None = None,
                 on_progress=None, bar=None):
        self.objective, self.pool, self.budget = objective, pool, int(budget)
        self.timeout, self.on_progress, self.bar = timeout, on_progress, bar
        self.t0 = time.perf_counter()
        self.evaluations = self.failures = self.restarts = 0
        self.best_preset, self.best_loss = None, float("inf")
        self.history: list[float] = []
        self._snapshot_budgets = tuple(sorted(set(snapshots)))
        self._best_after: list[tuple[float, object]] = []  # (time s, best preset) after each render
        self._timed_out = False

    @property
    def first_preset(self):
        """The first preset rendered (None before any)."""
        return self._best_after[0][1] if self._best_after else None

    @property
    def left(self) -> int:
        return max(0, self.budget - self.evaluations)

    @property
    def done(self) -> bool:
        """Budget spent, or past the timeout (checked between batches)."""
        if self.left == 0:
            return True
        if self.timeout is not None and time.perf_counter() - self.t0 > self.timeout:
            if not self._timed_out:
                log.info("search timeout after %d evaluations", self.evaluations)
            self._timed_out = True
        return self._timed_out

    def evaluate(self, presets: list, *, base=None) -> list[float]:
        """Losses of `presets`, each counted against the budget (ask for at most `left`)."""
        if not presets:
            return []
        if len(presets) > self.left:
            raise ValueError(f"{len(presets)} evaluations asked, {self.left} left in the budget")
        first = self.evaluations
        labels = [f"evaluation {first + k + 1}/" for k in range(len(presets))]
        scores = self.objective.scores(presets, pool=self.pool, base=base, labels=labels)
        losses = []
        now = time.perf_counter() - self.t0
        for preset, (loss, failed) in zip(presets, scores):
            self.evaluations += 1
            self.failures += int(failed)
            if loss < self.best_loss:
                self.best_preset, self.best_loss = preset, loss
            self.history.append(self.best_loss)
            self._best_after.append((now, self.best_preset))
            losses.append(loss)
        if self.bar is not None:
            self.bar.update(len(presets))
            self.bar.set_postfix(best=f"{self.best_loss:.4f}")
        if self.on_progress is not None:
            self.on_progress(self.evaluations, self.budget, self.best_loss)
        return losses

    def result(self, *, start, start_loss: float, params: tuple[str, ...], method: str) -> Refinement:
        """The search's outcome: the best preset, or `start` itself when nothing beat it."""
        seconds = time.perf_counter() - self.t0
        if self.failures:
            log.warning("%d of %d search renders failed", self.failures, self.evaluations)
        improved = self.best_loss < start_loss
        snaps = {}
        for b in self._snapshot_budgets:
            n = min(b, self.evaluations)
            if n == 0:
                continue
            (t, best), loss = self._best_after[n - 1], self.history[n - 1]
            snaps[b] = Snapshot(preset=best if loss < start_loss else start, loss=min(loss, start_loss),
                                evaluations=n, seconds=t)
        return Refinement(preset=self.best_preset if improved else start, initial_loss=start_loss,
                          final_loss=self.best_loss if improved else start_loss, evaluations=self.evaluations,
                          failures=self.failures, seconds=seconds, params=tuple(params),
                          history=tuple(self.history), renders_per_s=self.evaluations / max(seconds, 1e-9),
                          snapshots=snaps, method=method, restarts=self.restarts)
