"""Learning-rate schedule and SpecAugment: small pure functions the trainer composes."""

from __future__ import annotations

import math


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, min_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based: the factor used for the first
    update is lr_factor(0)). Linear warm-up from 1/warmup to 1 over `warmup_steps`, then cosine decay to
    `min_factor` at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def accumulation_windows(n_batches: int, accumulate: int) -> list[int]:
    """Sizes of the gradient-accumulation windows of an epoch: full windows of `accumulate` batches, then
    one shorter last window. Each batch's loss is divided by the size of *its* window, so the last partial
    window is not under-weighted."""
    full, rest = divmod(n_batches, accumulate)
    return [accumulate] * full + ([rest] if rest else [])


def spec_augment(mel, *, generator, time_masks: int = 2, time_width: int = 12, freq_masks: int = 2,
                 freq_width: int = 12):
    """SpecAugment on a (B, 1, n_mels, frames) log-mel batch: zero out random time and frequency stripes
    (each stripe up to *_width bins), per example, set to the batch minimum (log-silence). Returns a copy."""
    import torch

    out = mel.clone()
    b, _, n_mels, n_frames = out.shape
    floor = out.amin()
    for i in range(b):
        for _ in range(freq_masks):
            w = int(torch.randint(0, freq_width + 1, (1,), generator=generator))
            f0 = int(torch.randint(0, max(n_mels - w, 1), (1,), generator=generator))
            out[i, :, f0:f0 + w, :] = floor
        for _ in range(time_masks):
            w = int(torch.randint(0, time_width + 1, (1,), generator=generator))
            t0 = int(torch.randint(0, max(n_frames - w, 1), (1,), generator=generator))
            out[i, :, :, t0:t0 + w] = floor
    return out
