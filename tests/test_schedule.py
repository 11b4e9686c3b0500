import math

import pytest
import torch

from training.schedule import accumulation_windows, lr_factor, spec_augment


def test_warmup_then_cosine_from_the_first_step():
    f = [lr_factor(s, warmup_steps=4, total_steps=12) for s in range(13)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]  # the very first update already uses 1/warmup, never 0
    assert f[4] == pytest.approx(1.0)
    assert f[8] == pytest.approx(0.5)  # half-way through the cosine
    assert f[12] == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(100, warmup_steps=4, total_steps=12) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0, warmup_steps=0, total_steps=10) == 1.0
    assert lr_factor(5, warmup_steps=0, total_steps=10, min_factor=0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))


def test_accumulation_windows_cover_every_batch():
    assert accumulation_windows(10, 4) == [4, 4, 2]
    assert accumulation_windows(8, 4) == [4, 4]
    assert accumulation_windows(3, 1) == [1, 1, 1]
    assert accumulation_windows(2, 5) == [2]


def test_spec_augment_masks_stripes_and_keeps_the_input():
    torch.manual_seed(0)
    mel = torch.randn(2, 1, 32, 40)
    g = torch.Generator().manual_seed(1)
    out = spec_augment(mel, generator=g, time_width=5, freq_width=5)
    assert out.shape == mel.shape and not torch.equal(out, mel)
    changed = (out != mel)
    assert torch.all(out[changed] == mel.amin())
    assert changed.float().mean() < 0.6
    again = spec_augment(mel, generator=torch.Generator().manual_seed(1), time_width=5, freq_width=5)
    assert torch.equal(out, again)  # seeded
