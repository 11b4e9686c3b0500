"""The model's output heads, registered by name. Each reads the backbone's pooled features (B, F), F = 512 for
ResNet-18, and predicts one part of a `Preset`; its file holds everything about it (a `Head`, base.py: the
module, its loss, weight, decoding, metric and predict-the-mean baseline):

    continuous   (B, n_continuous) in (0, 1)         registry.continuous order, normalised values
    categorical  list of (B, n_classes_i) logits     one per ModelConfig.predicted_categorical
    wavetable    list of 3 (B, n_wavetables) logits  per oscillator; 0 = init table, k = catalog[k - 1]
    modulation   (B, 5, n_sources, n_destinations)   presence logit, amount (tanh, [-1, 1]), bipolar logit,
                                                     power ([-10, 10]), stereo logit

The model (`training.model`), the loss (`training.losses`), decoding (`training.decode`), the metrics
(`training.metrics`) and the baseline (`training.baseline`) loop over HEADS and name none of them. A head's name
is its attribute on the model, so the names are part of every checkpoint's weight names.

A new head: one module beside these defining its nn.Module and `HEAD = Head(...)`, and one entry below (plus,
if it needs them, its sizes in `training.model.ModelConfig` and a loss weight in `training.losses.LossConfig`).
"""

from __future__ import annotations

from training.heads import categorical, continuous, modulation, wavetable
from training.heads.base import Head
from training.heads.modulation import MODULATION_CHANNELS

# Order matters: the model builds its heads in this order (so a seed gives the same initial weights), and the
# loss sums them, the report lists them and decoding draws from them in this order.
HEADS: dict[str, Head] = {head.name: head for head in (continuous.HEAD, categorical.HEAD, wavetable.HEAD,
                                                        modulation.HEAD)}

__all__ = ["HEADS", "Head", "MODULATION_CHANNELS"]
