"""The preset estimator (training/model.py, training/heads/): shapes, ranges, initial priors, config round
trip, freezing, and loading a local pretrained backbone. Runs on the CPU in a few seconds."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

from training.heads import MODULATION_CHANNELS
from training.model import (
    BackboneError,
    ModelConfig,
    PresetEstimator,
    band_octaves,
    load_pretrained_backbone,
    model_config_for,
)

N_WAVETABLES = 45
N_PREDICTED_CATEGORICAL = 154  # of the registry's 159 categorical params, those with <= 128 classes
NOT_PREDICTED = ["effect_chain_order", "osc_1_transpose_quantize", "osc_2_transpose_quantize",
                 "osc_3_transpose_quantize", "sample_transpose_quantize"]
# torchvision resnet18: 11,689,512 parameters, less fc (512 x 1000 + 1000) and 2 of conv1's 3 input channels
BACKBONE_PARAMS = 11_689_512 - 513_000 - 2 * 64 * 7 * 7
N_PARAMS = 14_902_392  # default config from the real registry, n_wavetables = 45
SHARED_TRUNK = 512 * 512 + 512  # categorical_mlp=True adds one hidden layer (hidden = 512)


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model must never download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture(scope="module")
def config(registry):
    return model_config_for(registry, n_wavetables=N_WAVETABLES)


@pytest.fixture(scope="module")
def model(config):
    torch.manual_seed(0)
    return PresetEstimator(config)


def mel(batch: int = 2, *, seed: int = 0) -> torch.Tensor:
    """A log-mel-like input: (B, 128, 173), natural-log power around -8."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 128, 173, generator=g) * 3 - 8


def test_config_from_registry(registry, config):
    assert config.n_continuous == len(registry.continuous) == 293
    assert len(config.predicted_categorical) == len(config.categorical_classes) == N_PREDICTED_CATEGORICAL
    assert N_PREDICTED_CATEGORICAL == sum(p.n_classes <= 128 for p in registry.categorical)
    predicted = [registry.categorical[i].name for i in config.predicted_categorical]
    skipped = sorted(p.name for p in registry.categorical if p.name not in predicted)
    assert skipped == NOT_PREDICTED
    assert [registry.categorical[i].n_classes for i in config.predicted_categorical] == list(
        config.categorical_classes)
    assert max(config.categorical_classes) == 97 and min(config.categorical_classes) == 2
    assert (config.n_sources, config.n_destinations, config.n_wavetables) == (32, 428, 45)
    assert model_config_for(registry, n_wavetables=3, embed_dim=16, freeze_stages=1).embed_dim == 16


def test_config_dict_round_trip(config):
    custom = ModelConfig.from_dict({**config.to_dict(), "categorical_mlp": True, "freeze_stages": 3})
    for c in (config, custom):
        d = json.loads(json.dumps(c.to_dict()))
        assert isinstance(d["categorical_classes"], list)
        back = ModelConfig.from_dict(d)
        assert back == c and isinstance(back.categorical_classes, tuple)
        assert isinstance(back.predicted_categorical, tuple)


def test_config_rejects_bad_values(config):
    with pytest.raises(ValueError, match="freeze_stages"):
        ModelConfig.from_dict({**config.to_dict(), "freeze_stages": 5})
    with pytest.raises(ValueError, match="class counts"):
        ModelConfig.from_dict({**config.to_dict(), "categorical_classes": [2, 3]})


def test_output_shapes_dtypes_and_ranges(model, config):
    out = model(mel())
    assert set(out) == {"continuous", "categorical", "wavetable", "modulation"}
    assert out["continuous"].shape == (2, 293) and out["continuous"].dtype == torch.float32
    assert ((out["continuous"] > 0) & (out["continuous"] < 1)).all()
    assert [t.shape for t in out["categorical"]] == [(2, n) for n in config.categorical_classes]
    assert all(t.dtype == torch.float32 for t in out["categorical"])
    assert [t.shape for t in out["wavetable"]] == [(2, 45)] * 3
    mod = out["modulation"]
    assert mod.shape == (2, 5, 32, 428) and mod.dtype == torch.float32
    assert MODULATION_CHANNELS == ("presence", "amount", "bipolar", "power", "stereo")
    assert mod[:, 1].abs().max() <= 1 and mod[:, 3].abs().max() <= 10
    assert torch.isfinite(mod).all()


def test_range_limits_hold_for_extreme_inputs(model):
    model.eval()
    try:
        with torch.no_grad():
            out = model(mel(seed=1) * 1000)
    finally:
        model.train()
    assert ((out["continuous"] >= 0) & (out["continuous"] <= 1)).all()
    assert out["modulation"][:, 1].abs().max() <= 1 and out["modulation"][:, 3].abs().max() <= 10


def test_initial_presence_matches_sparse_prior(model):
    with torch.no_grad():
        presence = torch.sigmoid(model(mel())["modulation"][:, 0])
    # bias -5 -> sigmoid = 0.0067; data: ~10 connections of 32 x 428 = 13,696 pairs
    assert presence.mean() < 0.01 and presence.max() < 0.01
    assert presence.mean() == pytest.approx(torch.sigmoid(torch.tensor(-5.0)).item(), rel=0.1)


def test_heads_are_registered_by_name(model):
    """Each registered head is a submodule under its name (the checkpoint's weight names) and a forward key, in
    registry order; nothing else sits beside the backbone."""
    from training.heads import HEADS

    assert list(HEADS) == ["continuous", "categorical", "wavetable", "modulation"]
    assert {key.split(".")[0] for key in model.state_dict()} == {"input_norm", "backbone", *HEADS}
    with torch.no_grad():
        assert list(model(mel())) == list(HEADS)


def test_accepts_mel_with_or_without_channel_axis(model):
    model.eval()
    try:
        with torch.no_grad():
            a, b = model(mel()), model(mel().unsqueeze(1))
    finally:
        model.train()
    assert torch.equal(a["continuous"], b["continuous"]) and torch.equal(a["modulation"], b["modulation"])
    with pytest.raises(ValueError, match=r"\(B, 128, 173\)"):
        model(torch.zeros(2, 128, 100))


def test_parameter_count(config):
    model = PresetEstimator(config)
    n = sum(p.numel() for p in model.parameters())
    print(f"PresetEstimator parameters: {n:,} (backbone {BACKBONE_PARAMS:,})")
    assert sum(p.numel() for p in model.backbone.parameters()) == BACKBONE_PARAMS == 11_170_240
    assert n == N_PARAMS
    shared = PresetEstimator(ModelConfig.from_dict({**config.to_dict(), "categorical_mlp": True}))
    assert sum(p.numel() for p in shared.parameters()) == N_PARAMS + SHARED_TRUNK


def test_freeze_stages(config):
    model = PresetEstimator(ModelConfig.from_dict({**config.to_dict(), "freeze_stages": 2}))
    b = model.backbone
    for frozen in (b.conv1, b.bn1, b.layer1, b.layer2):
        assert not any(p.requires_grad for p in frozen.parameters())
    for trained in (b.layer3, b.layer4, model.input_norm, model.modulation):
        assert all(p.requires_grad for p in trained.parameters())
    model.train()  # frozen BatchNorm statistics stay fixed
    assert not b.bn1.training and not b.layer2.training and b.layer3.training and model.training
    assert all(p.requires_grad for p in PresetEstimator(config).parameters())


def test_backward_gives_finite_gradients(config):
    torch.manual_seed(0)
    model = PresetEstimator(config)
    out = model(mel())
    loss = (out["continuous"].mean() + sum(t.logsumexp(-1).mean() for t in out["categorical"])
            + sum(t.logsumexp(-1).mean() for t in out["wavetable"]) + out["modulation"].pow(2).mean())
    loss.backward()
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    assert len(named) == len(list(model.parameters()))
    missing = [name for name, p in named if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for _, p in named)
    assert model.backbone.conv1.weight.grad.abs().sum() > 0


def save_imagenet_like(path, state=None):
    """A state dict shaped like torchvision's ImageNet resnet18 file (3-channel conv1, fc included)."""
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict() if state is None else state
    torch.save(state, path)
    return state


def test_load_pretrained_backbone(config, tmp_path):
    path = tmp_path / "resnet18.pth"
    state = save_imagenet_like(path)
    model = PresetEstimator(ModelConfig.from_dict({**config.to_dict(), "freeze_stages": 1}))
    head_before = model.continuous.mlp[0].weight.clone()
    load_pretrained_backbone(model, path)
    loaded = model.backbone.state_dict()
    assert loaded["conv1.weight"].shape == (64, 1, 7, 7)
    expected_conv1 = (state["conv1.weight"][:, 0] + state["conv1.weight"][:, 1] + state["conv1.weight"][:, 2]) / 3
    torch.testing.assert_close(loaded["conv1.weight"][:, 0], expected_conv1)
    for key, value in state.items():
        if key != "conv1.weight" and not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    assert torch.equal(model.continuous.mlp[0].weight, head_before)  # heads untouched
    assert not model.backbone.conv1.weight.requires_grad  # still frozen


def test_load_pretrained_backbone_without_batch_counters(config, tmp_path):
    path = tmp_path / "old.pth"  # old torchvision files carry no num_batches_tracked
    state = {k: v for k, v in torchvision.models.resnet18(weights=None).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    save_imagenet_like(path, state)
    model = PresetEstimator(config)
    load_pretrained_backbone(model, path)
    assert torch.equal(model.backbone.layer4[1].bn2.weight, state["layer4.1.bn2.weight"])


def test_load_pretrained_backbone_rejects_bad_files(config, tmp_path):
    model = PresetEstimator(config)
    before = model.backbone.layer1[0].conv1.weight.clone()
    state = torchvision.models.resnet18(weights=None).state_dict()
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "layer3.0.bn1.running_mean"},
                    r"missing layer3\.0\.bn1\.running_mean, unexpected none"),
        "extra": ({**state, "layer5.weight": torch.zeros(1)}, r"missing none, unexpected layer5\.weight"),
        "shape": ({**state, "layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1)},
                  r"layer1\.0\.conv1\.weight \(64, 64, 1, 1\) != \(64, 64, 3, 3\)"),
    }
    for name, (bad, message) in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save(bad, path)
        with pytest.raises(BackboneError, match=message):
            load_pretrained_backbone(model, path)
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(BackboneError, match="not a readable torch state dict"):
        load_pretrained_backbone(model, tmp_path / "junk.pth")
    assert torch.equal(model.backbone.layer1[0].conv1.weight, before)  # nothing half-loaded
    with pytest.raises(FileNotFoundError, match="no pretrained backbone file at .*never downloaded"):
        load_pretrained_backbone(model, tmp_path / "absent.pth")


def test_categorical_heads_are_one_linear_each_computed_together(model):
    """The categorical head multiplies once by all its parameters' weights, but its output is each Linear's, and
    its weights keep one name per parameter (the checkpoint format)."""
    head = model.categorical
    feat = torch.randn(3, 512)
    head.eval()
    try:
        with torch.no_grad():
            together = head(feat)
            alone = [lin(feat) for lin in head.heads]
    finally:
        head.train()
    assert [tuple(z.shape) for z in together] == [(3, n) for n in head.sizes]
    for a, b in zip(together, alone):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert "categorical.heads.0.weight" in model.state_dict()


# ------------------------------------------------------------------------------- hearing the played note


@pytest.fixture(scope="module")
def hearing(config):
    """The default model that also hears the played note (the default features' 128 bands, as `mel()`)."""
    from datagen.features import FeatureConfig

    torch.manual_seed(0)
    return PresetEstimator(ModelConfig.from_dict({**config.to_dict(), "band_octaves": band_octaves(FeatureConfig())}))


def test_the_note_plane_is_each_bands_octaves_above_the_note(hearing):
    from datagen.features import FeatureConfig, mel_band_hz

    centres = mel_band_hz(FeatureConfig())  # (128,) Hz
    plane = hearing.note_plane(torch.tensor([69, 81, 60]), 5)  # A4 (440 Hz), A5, C4
    assert plane.shape == (3, 1, 128, 5) and torch.equal(plane[..., 0], plane[..., 4])
    np.testing.assert_allclose(4 * plane[0, 0, :, 0].numpy(), np.log2(centres / 440.0), atol=1e-5)
    np.testing.assert_allclose(4 * plane[1, 0, :, 0].numpy(), np.log2(centres / 880.0), atol=1e-5)
    np.testing.assert_allclose(4 * plane[2, 0, :, 0].numpy(), np.log2(centres / 261.6256), atol=1e-5)
    assert abs(float(plane[0, 0, np.argmin(abs(centres - 440.0)), 0])) < 0.02  # the note's own band reads ~0


def test_a_model_that_hears_the_note_answers_for_the_note(hearing, model, config):
    hearing.eval()
    model.eval()
    with torch.no_grad():
        low, high = hearing(mel(), torch.tensor([48, 48])), hearing(mel(), torch.tensor([60, 60]))
        assert not torch.allclose(low["continuous"], high["continuous"])
        assert torch.equal(low["continuous"], hearing(mel(), torch.tensor([48.0, 48.0]))["continuous"])
        # a model that does not hear it ignores the note
        assert torch.equal(model(mel(), torch.tensor([48, 48]))["continuous"], model(mel())["continuous"])
    for note in (None, torch.tensor([60])):
        with pytest.raises(ValueError, match="this model hears the played note: give"):
            hearing(mel(), note)
    assert hearing.backbone.conv1.weight.shape == (64, 2, 7, 7)  # log-mel and note plane
    assert sum(p.numel() for p in hearing.parameters()) == N_PARAMS + 64 * 7 * 7
    assert "band_octaves" not in hearing.state_dict()  # the config carries it, not the weights
    assert ModelConfig.from_dict(json.loads(json.dumps(hearing.config.to_dict()))) == hearing.config
    with pytest.raises(ValueError, match="band_octaves has 3 entries for 128 mel bands"):
        ModelConfig.from_dict({**config.to_dict(), "band_octaves": [0.0, 1.0, 2.0]})


def test_a_pretrained_backbone_starts_deaf_to_the_note(hearing, tmp_path):
    state = save_imagenet_like(tmp_path / "resnet18.pth")
    model = PresetEstimator(hearing.config)
    load_pretrained_backbone(model, tmp_path / "resnet18.pth")
    conv1 = model.backbone.conv1.weight
    torch.testing.assert_close(conv1[:, 0], state["conv1.weight"].mean(dim=1))
    assert torch.equal(conv1[:, 1], torch.zeros_like(conv1[:, 1]))
