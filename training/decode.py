"""Model outputs -> presets: the one place that reads the network's heads as Vital settings.

Used by `training evaluate` (render predictions) and by inference (`Pipeline.predict`). Per sample:
- continuous: the sigmoid outputs are already normalised [0, 1] values, clamped for safety;
- categorical: argmax of each predicted head, with its softmax probability as confidence; the parameters
  the model does not predict (huge-range ones, see `model_config_for`) keep the init preset's value;
- wavetables: class 0 keeps the init table, class k is catalog entry k - 1;
- modulation: cells with sigmoid(presence) >= threshold, most confident first, capped at Vital's 64 slots,
  with amount, power, and bipolar / stereo thresholded at 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from datagen.registry import MODULATION_SLOTS

if TYPE_CHECKING:
    from datagen.preset import Preset


@dataclass(frozen=True)
class Decoded:
    preset: Preset
    confidence: dict[str, float]  # categorical name -> probability of the chosen class
    wavetable_confidence: tuple[float, ...]  # per oscillator
    modulation_confidence: tuple[float, ...]  # per connection, same order as preset.modulations
    extra: dict = field(default_factory=dict)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _choose(probs: np.ndarray, rng: np.random.Generator | None) -> int:
    """The argmax of (n_classes,) probabilities, or a draw from them when an rng is given."""
    if rng is None:
        return int(probs.argmax())
    return int(rng.choice(len(probs), p=probs / probs.sum()))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def decode(outputs: dict, *, registry, catalog, predicted_categorical, threshold: float = 0.5,
           max_connections: int = MODULATION_SLOTS, base=None, rng: np.random.Generator | None = None,
           jitter: float = 0.0) -> list[Decoded]:
    """outputs: the model's forward dict (torch tensors or numpy), batch of B; returns B `Decoded`.

    catalog: the checkpoint's wavetable Catalog; base: the preset supplying what the model does not predict
    (default: the init preset). rng: draw each categorical choice and wavetable from the heads' softmax instead
    of taking the argmax, and move each continuous value by N(0, jitter) (proposals: `inference.proposals`)."""
    from datagen.preset import Modulation, init_preset

    arr = lambda t: t.detach().float().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)  # noqa: E731
    cont = arr(outputs["continuous"])  # (B, n_cont)
    if rng is not None and jitter > 0:
        cont = cont + rng.normal(0.0, jitter, cont.shape)
    cont = np.clip(cont, 0.0, 1.0)
    cat_probs = [_softmax(arr(z)) for z in outputs["categorical"]]  # each (B, n_classes)
    wt_probs = [_softmax(arr(z)) for z in outputs["wavetable"]]  # 3 x (B, n_tables + 1)
    mod = arr(outputs["modulation"])  # (B, 5, S, D)
    base = base or init_preset(registry)
    names_cont = [p.name for p in registry.continuous]
    out = []
    for b in range(cont.shape[0]):
        categorical = dict(base.categorical)
        confidence = {}
        for col, probs in zip(predicted_categorical, cat_probs):
            p = registry.categorical[col]
            k = _choose(probs[b], rng)
            categorical[p.name] = k
            confidence[p.name] = float(probs[b, k])
        tables, wt_conf = [], []
        for probs in wt_probs:
            k = _choose(probs[b], rng)
            tables.append(None if k == 0 else catalog[k - 1].data)
            wt_conf.append(float(probs[b, k]))
        presence = _sigmoid(mod[b, 0])  # (S, D)
        s_idx, d_idx = np.nonzero(presence >= threshold)
        order = np.argsort(-presence[s_idx, d_idx], kind="stable")[:max_connections]
        mods, mod_conf = [], []
        for i in order:
            s, d = int(s_idx[i]), int(d_idx[i])
            mods.append(Modulation(source=registry.sources[s], destination=registry.destinations[d],
                                   amount=float(np.clip(mod[b, 1, s, d], -1, 1)),
                                   bipolar=bool(mod[b, 2, s, d] >= 0), power=float(np.clip(mod[b, 3, s, d], -10, 10)),
                                   stereo=bool(mod[b, 4, s, d] >= 0)))
            mod_conf.append(float(presence[s, d]))
        preset = replace(base, continuous=dict(zip(names_cont, map(float, cont[b]))), categorical=categorical,
                         wavetables=tuple(tables), modulations=tuple(mods))
        out.append(Decoded(preset=preset, confidence=confidence, wavetable_confidence=tuple(wt_conf),
                           modulation_confidence=tuple(mod_conf)))
    return out
