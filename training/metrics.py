"""Parameter metrics: how close a model's outputs are to a batch's targets, head by head, accumulated over
batches (not audio metrics: those are `inference.metrics`).

Each head of `training.heads.HEADS` keeps masked sums and counts (`Head.metric`), masked exactly as the loss
masks them (`training.losses.masks`), so the numbers over many batches are exactly those of one batch holding
every item. A ratio whose count is 0 is None (JSON null). The keys, per head:

    continuous   continuous_mse, _mae (normalised units), _count, and per registry module _mse_by_group,
                 _mae_by_group, _count_by_group
    categorical  categorical_accuracy (argmax, over the predicted parameters), _count, _accuracy_by_param
    wavetable    wavetable_accuracy (over the oscillators that are on), _count
    modulation   modulation_precision, _recall (presence probability >= 0.5), _amount_mae (over true positives),
                 _tp, _fp, _fn
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from training.heads import HEADS


class MetricSums:
    """Masked sums and counts of every parameter metric, accumulated batch by batch.

    `update(outputs, batch)` takes the model's forward dict (or any dict shaped like it: a head missing from it
    is skipped) and a batch from `training.data.collate`; `result()` divides. registry: groups the continuous
    metrics by module (None: no per-module numbers). wavetable_map, when given, maps the model's wavetable
    classes to the data set's ((n_model_tables + 1,) int64, -1 = a table the data set's catalog does not have),
    see `training.heads.wavetable.wavetable_class_map`. heads: the heads to score (default: every head).
    pos_weight: the presence loss's pos_weight the model was trained with (presence is counted at probability
    >= 0.5, `training.heads.modulation.presence_probability`)."""

    def __init__(self, *, registry, spec, predicted_categorical, wavetable_map: np.ndarray | None = None,
                 heads: Iterable[str] | None = None, pos_weight: float = 1.0):
        self.spec = spec
        self.pos_weight = float(pos_weight)
        self.predicted = [int(i) for i in predicted_categorical]
        self.groups = None if registry is None else [registry.by_name[name].module for name in spec.continuous_names]
        self.wavetable_map = None if wavetable_map is None else np.asarray(wavetable_map, np.int64)
        self.heads = {name: HEADS[name].metric(self) for name in (HEADS if heads is None else heads)}
        self.n_items = 0

    @property
    def osc_switch(self) -> list[int]:
        """The categorical columns of osc_1_on .. osc_3_on: the wavetable metric counts oscillators that are on."""
        from training.heads.wavetable import switch_columns

        return switch_columns(self.spec)

    def update(self, outputs: dict, batch: dict) -> None:
        from training.losses import masks, routed_sources

        m = masks(self.spec, batch["categorical"], routed_sources(batch["modulation"]))
        for name, sums in self.heads.items():
            if name in outputs:
                sums.update(outputs[name], batch, m)
        self.n_items += len(batch["categorical"])

    def result(self) -> dict:
        out = {"n_items": self.n_items}
        for sums in self.heads.values():
            out.update(sums.result())
        return out


def metrics(outputs: dict, batch: dict, spec, predicted_categorical) -> dict:
    """The metrics of one batch (`MetricSums.result` after one update, without the per-module numbers)."""
    sums = MetricSums(registry=None, spec=spec, predicted_categorical=predicted_categorical)
    sums.update(outputs, batch)
    return sums.result()
