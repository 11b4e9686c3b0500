import pytest
import torch

from training.checkpoint import FORMAT_VERSION, CheckpointError, load, save


def test_round_trip_and_refusals(tmp_path, registry):
    path = tmp_path / "c.pt"
    save(path, {"registry_fingerprint": registry.fingerprint, "model": {"w": torch.ones(2)}, "config": {"a": 1}})
    ckpt = load(path)
    assert ckpt["format_version"] == FORMAT_VERSION and torch.equal(ckpt["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left

    save(path, {"registry_fingerprint": "0000000000000000"})
    with pytest.raises(CheckpointError, match="trained for registry 0000000000000000"):
        load(path)
    torch.save({"format_version": 99}, path)
    with pytest.raises(CheckpointError, match="checkpoint format 99, this code reads format 1"):
        load(path)
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="c.pt: not a checkpoint \\(not a PyTorch file\\)"):
        load(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load(tmp_path / "missing.pt")


def test_code_in_a_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format_version": FORMAT_VERSION, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused, it holds Python objects"):
        load(path)


def _parts(**change) -> dict:
    """The parts `contents` reads, as a training run writes them (defaults), with `change` applied (None: drop)."""
    from datagen.features import FeatureConfig
    from datagen.render import RenderConfig
    from datagen.wavetables import default_catalog

    parts = {"feature_config": FeatureConfig().to_json(), "render_config": RenderConfig().to_json(),
             "wavetable_catalog": default_catalog().to_json(), "tier": 3}
    parts.update(change)
    return {k: v for k, v in parts.items() if v is not None}


def test_a_trained_checkpoint_carries_its_data_sets_render_config(tiny_checkpoint):
    from datagen.dataset import read_attrs
    from datagen.render import RenderConfig
    from training.checkpoint import contents, slim

    stored = read_attrs(tiny_checkpoint.parent.parent / "tiny.h5")["render_config"]
    ckpt = load(tiny_checkpoint)
    assert ckpt["render_config"] == stored  # the data set's JSON, unchanged
    assert contents(ckpt, tiny_checkpoint).render == RenderConfig.from_json(stored) == RenderConfig()
    shipped = slim(ckpt)  # what `training export` writes keeps it
    assert shipped["render_config"] == stored and contents(shipped, tiny_checkpoint).render == RenderConfig()


def test_contents_reads_a_non_default_render_config(tmp_path):
    from datagen.features import FeatureConfig
    from datagen.render import RenderConfig
    from training.checkpoint import contents

    render = RenderConfig(sample_rate=22050, velocity=0.5, note_length=0.25, render_length=0.5)
    got = contents(_parts(render_config=render.to_json(), feature_config=FeatureConfig(
        sample_rate=22050, duration=0.5, f_max=11025.0).to_json()), tmp_path / "c.pt")
    assert got.render == render and (got.render.velocity, got.render.sample_rate) == (0.5, 22050)


@pytest.mark.parametrize("render_config, fragment", [
    (None, "incomplete checkpoint, no render_config"),
    ("{not json", "corrupt render_config (Expecting property name"),
    ('{"sample_rate": 44100, "colour": 3}', "unexpected keyword argument 'colour'"),
    ('{"velocity": 2.0}', "corrupt render_config (bad render config"),
    ("[1, 2]", "corrupt render_config ("),
    (3, "corrupt render_config ("),
    ('{"sample_rate": 48000}', "corrupt render_config (renders at 48000 Hz, the features are at 44100 Hz)"),
])
def test_a_missing_or_corrupt_render_config_is_one_line(render_config, fragment, tmp_path):
    from training.checkpoint import contents

    ckpt = _parts(render_config=render_config)
    assert ("render_config" in ckpt) == (render_config is not None)
    with pytest.raises(CheckpointError) as e:
        contents(ckpt, tmp_path / "c.pt")
    line = str(e.value)
    assert line.startswith(f"{tmp_path / 'c.pt'}: ") and fragment in line and "\n" not in line, line


def test_the_loss_config_travels_with_the_checkpoint(tiny_checkpoint, tmp_path):
    """The trainer stores its LossConfig; decoding reads the presence pos_weight from it. A checkpoint from before
    it was stored reads the defaults (pos_weight was never an option); a corrupt one is one line."""
    from training.checkpoint import contents, slim
    from training.losses import LossConfig

    ckpt = load(tiny_checkpoint)
    assert ckpt["loss_config"]["modulation_pos_weight"] == LossConfig().modulation_pos_weight == 100.0
    assert contents(ckpt, tiny_checkpoint).loss == contents(slim(ckpt), tiny_checkpoint).loss
    # before the trainer stored it: the defaults of then (squared continuous error)
    assert contents(_parts(), tmp_path / "c.pt").loss == LossConfig(continuous_error="l2")
    assert contents(_parts(loss_config={"modulation_pos_weight": 100.0}), tmp_path / "c.pt").loss.continuous_error == "l2"
    assert ckpt["loss_config"]["continuous_error"] == "l1"  # today's default, stored
    four = contents(_parts(loss_config={"modulation_pos_weight": 4.0}), tmp_path / "c.pt")
    assert four.loss.modulation_pos_weight == 4.0
    for bad, fragment in (({"pos_weight": 3}, "unexpected keyword argument 'pos_weight'"),
                          ({"modulation_pos_weight": 0.0}, "modulation_pos_weight 0.0 is not > 0"),
                          ({"continuous_error": "l3"}, "continuous_error must be one of"), ([1], "")):
        with pytest.raises(CheckpointError) as e:
            contents(_parts(loss_config=bad), tmp_path / "c.pt")
        assert "corrupt loss_config (" in str(e.value) and fragment in str(e.value) and "\n" not in str(e.value)
