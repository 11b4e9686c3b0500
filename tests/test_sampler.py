"""The sampler: a pure function of (config, index), version 2's canonical slots, version 1 unchanged."""

import pytest

from datagen.console import ConfigError
from datagen.registry import FILTERS, OSCILLATORS
from datagen.sampler import TRANSPOSE_ZERO, Sampler, SamplerConfig


@pytest.fixture(scope="module")
def presets(registry):
    sampler = Sampler(SamplerConfig(tier=3, seed=11), registry=registry)
    return [sampler.sample(i) for i in range(60)]


def test_pure_function_of_index(registry):
    a = Sampler(SamplerConfig(tier=2, seed=5), registry=registry)
    b = Sampler(SamplerConfig(tier=2, seed=5), registry=registry)
    b.sample(7)  # another index first: no state leaks between samples
    assert a.sample(3).to_vital_text() == b.sample(3).to_vital_text()


def test_version_2_oscillators_fill_the_first_slots_from_the_lowest_transpose(presets):
    for p in presets:
        on = [p.categorical[f"{o}_on"] for o in OSCILLATORS]
        assert on == sorted(on, reverse=True) and on[0] == 1  # 1-3 oscillators, always the first ones
        transposes = [p.categorical[f"{o}_transpose"] for o, flag in zip(OSCILLATORS, on) if flag]
        assert transposes == sorted(transposes)
        levels = [p.continuous[f"{o}_level"] for o, flag in zip(OSCILLATORS, on) if flag]
        assert max(levels) == pytest.approx(1.0, abs=1e-6) and min(levels) >= 0.45 - 1e-6


def test_version_2_transposes_are_mostly_unisons_and_octaves_within_two_octaves(presets):
    steps = [p.categorical[f"{o}_transpose"] - TRANSPOSE_ZERO for p in presets for o in OSCILLATORS]
    assert all(-24 <= s <= 24 for s in steps)
    assert 0.35 < sum(s == 0 for s in steps) / len(steps) < 0.75  # half by design, plus uniform draws of 0
    assert any(s % 12 for s in steps)  # the uniform share is not octaves only


def test_version_2_a_single_filter_is_filter_1_and_destinations_follow(presets):
    seen_swap = False
    for p in presets:
        on = [p.categorical[f"{f}_on"] for f in FILTERS]
        assert on == sorted(on, reverse=True)
        if all(on):
            assert p.continuous["filter_1_cutoff"] <= p.continuous["filter_2_cutoff"]
        seen_swap |= on == [1, 0]
    assert seen_swap
    destinations = {p.categorical[f"{o}_destination"] for p in presets for o in OSCILLATORS}
    assert destinations <= {0, 1, 2, 4}


def test_version_2_modulations_route_to_audible_reordered_slots(presets):
    for p in presets:
        for m in p.modulations:
            for o in OSCILLATORS:
                if m.destination.startswith(f"{o}_"):
                    assert p.categorical[f"{o}_on"] == 1, (m, p.name)


def test_version_1_draws_are_unchanged(registry):
    """Banks and data sets built before version 2 rebuild their presets from (seed, index): version 1 must keep
    drawing exactly what it drew (oscillators at random slots, uniform transposes over +-48)."""
    sampler = Sampler(SamplerConfig(tier=1, seed=0, version=1), registry=registry)
    p = sampler.sample(0)
    assert [p.categorical[f"{o}_on"] for o in OSCILLATORS] == [0, 1, 1]  # golden values from before version 2
    assert [p.categorical[f"{o}_transpose"] for o in OSCILLATORS] == [34, 52, 26]
    assert p.continuous["osc_1_level"] == pytest.approx(0.649743, abs=1e-6)


def test_unknown_version_is_a_config_error():
    with pytest.raises(ConfigError, match="sampler version"):
        SamplerConfig(version=3)


def test_draw_tier_of_a_model_of_real_or_perturbed_presets_is_the_richest():
    from datagen.sampler import TIERS, draw_tier

    assert [draw_tier(t) for t in TIERS] == list(TIERS)
    assert draw_tier(0) == max(TIERS)  # a tier-0 model's random draws and sampler proposals
