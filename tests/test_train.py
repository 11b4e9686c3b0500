"""The trainer on a tiny data set made by datagen in the test (CPU)."""

import json

import pytest
import torch
from click.testing import CliRunner

from datagen.console import ConfigError
from datagen.features import FeatureConfig
from datagen.generate import GenerateConfig, generate
from datagen.render import RenderConfig
from training.checkpoint import load
from training.cli import main
from training.train import TrainConfig, train


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "tiny.h5"
    config = GenerateConfig(tier=3, n_presets=12, notes=(60,), render=RenderConfig(render_length=0.5, note_length=0.25),
                            features=FeatureConfig(duration=0.5))
    generate(out, config, workers=2, show_progress=False)
    return out


def test_loss_falls_and_checkpoints_rebuild(tiny, tmp_path, registry):
    config = TrainConfig(data=(str(tiny),), output=str(tmp_path / "run"), epochs=6, batch_size=4, lr=1e-3,
                         warmup_epochs=0, spec_augment=False, early_stopping_patience=0)
    result = train(config, show_progress=False)
    losses = [r["train/loss"] for r in result["history"]]
    assert result["epochs_run"] == 6 and losses[-1] < 0.7 * losses[0], losses
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"best.pt", "latest.pt", "log.jsonl", "loss.png"}
    assert len((run / "log.jsonl").read_text().splitlines()) == 6
    ckpt = load(run / "best.pt")
    assert ckpt["registry_fingerprint"] == registry.fingerprint and ckpt["tier"] == 3
    assert ckpt["state"]["best_epoch"] == result["best_epoch"]
    from training.model import ModelConfig, PresetEstimator

    model = PresetEstimator(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"], strict=True)
    # by default it hears the played note and fits the continuous values by absolute error
    assert len(model.config.band_octaves) == model.config.n_mels and ckpt["loss_config"]["continuous_error"] == "l1"
    assert FeatureConfig.from_json(ckpt["feature_config"]).duration == 0.5
    # the data set's render config, not the defaults: inference renders candidates like the training rows
    assert RenderConfig.from_json(ckpt["render_config"]) == RenderConfig(render_length=0.5, note_length=0.25)


def test_gradient_accumulation_steps_once_per_window(tiny, tmp_path):
    from training.data import PresetDataset
    from training.schedule import accumulation_windows

    config = TrainConfig(data=(str(tiny),), output=str(tmp_path / "acc"), epochs=1, batch_size=2,
                         gradient_accumulation_steps=4, spec_augment=True)
    train(config, show_progress=False)
    row = json.loads((tmp_path / "acc" / "log.jsonl").read_text().splitlines()[0])
    n_batches = -(-len(PresetDataset(tiny, split="train")) // 2)
    assert row["step"] == len(accumulation_windows(n_batches, 4))  # one optimizer step per (partial) window


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "batch-size must be positive, got 0"),
    (["--lr", "0"], "lr must be positive, got 0.0"),
    (["--epochs", "-1"], "epochs must be positive, got -1"),
    (["--precision", "fp16"], "'fp16' is not one of 'auto', 'bf16', 'fp32'"),
    (["--continuous-error", "l3"], "'l3' is not one of 'l1', 'l2'"),
])
def test_bad_configs(tiny, tmp_path, args, message):
    r = CliRunner().invoke(main, ["train", "-d", str(tiny), "-o", str(tmp_path / "x"), *args])
    assert r.exit_code == 2 and message in r.output, r.output


def test_precision():
    """bf16 autocast where asked, or on "auto" on CUDA; float32 otherwise (a CPU trains no faster in bf16 here).
    A bad value is refused by the config itself."""
    from training.train import autocast_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("fp32", cuda) is None and autocast_dtype("auto", cpu) is None
    assert autocast_dtype("auto", cuda) is torch.bfloat16 and autocast_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(ConfigError, match="precision must be one of auto, bf16, fp32, got 'half'"):
        TrainConfig(data=("x.h5",), output="o", precision="half")


def test_emulated_bf16_on_a_cpu_is_warned(tiny, tmp_path, monkeypatch, caplog):
    import training.train as trainer

    monkeypatch.setattr(trainer, "native_cpu_bf16", lambda: False)
    for precision in ("bf16", "fp32"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="training.train"):
            train(TrainConfig(data=(str(tiny),), output=str(tmp_path / precision), epochs=1, batch_size=4,
                              max_batches_per_epoch=1, precision=precision), show_progress=False)
        assert ("no native bf16" in caplog.text) == (precision == "bf16"), caplog.text
        assert ("use --precision fp32" in caplog.text) == (precision == "bf16")


def test_missing_data_and_other_registry(tiny, tmp_path):
    r = CliRunner().invoke(main, ["train", "-d", str(tmp_path / "none.h5"), "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "no such data set" in r.output
    import shutil

    import h5py

    other = tmp_path / "other.h5"
    shutil.copy(tiny, other)
    with h5py.File(other, "a") as f:
        f.attrs["registry_fingerprint"] = "0000000000000000"
    r = CliRunner().invoke(main, ["train", "-d", str(other), "-o", str(tmp_path / "x")])
    assert r.exit_code == 2 and "made with registry 0000000000000000" in r.output


def test_cli_train_smoke(tiny, tmp_path):
    r = CliRunner().invoke(main, ["train", "-d", str(tiny), "-o", str(tmp_path / "cli"), "--epochs", "1",
                                  "--batch-size", "4", "--max-batches-per-epoch", "1", "--no-note",
                                  "--continuous-error", "l2"])
    assert r.exit_code == 0, r.output
    assert "1 epochs, best val loss" in r.output
    ckpt = torch.load(tmp_path / "cli" / "latest.pt", weights_only=True)
    assert ckpt["state"]["step"] == 1
    assert ckpt["model_config"]["band_octaves"] == [] and ckpt["loss_config"]["continuous_error"] == "l2"


def _tiny_run(tiny, out, *args):
    r = CliRunner().invoke(main, ["train", "-d", str(tiny), "-o", str(out), "--epochs", "1", "--batch-size", "4",
                                  "--max-batches-per-epoch", "1", *map(str, args)])
    return r


def test_init_from_starts_at_the_checkpoints_weights(tiny, tmp_path):
    assert _tiny_run(tiny, tmp_path / "first", "--seed", 1).exit_code == 0  # not seed 0's random init
    # a step of lr 1e-12 moves nothing measurable: the fine-tuned run holds the first run's weights
    r = _tiny_run(tiny, tmp_path / "second", "--init-from", tmp_path / "first" / "latest.pt", "--lr", 1e-12)
    assert r.exit_code == 0, r.output
    first, second = (load(tmp_path / run / "latest.pt") for run in ("first", "second"))
    params = [k for k in first["model"] if "running_" not in k and "num_batches" not in k]  # BatchNorm stats move
    assert second["state"]["epoch"] == 0 and "optimizer" in second  # a fresh run, not a resumed one
    for k in params:
        torch.testing.assert_close(second["model"][k], first["model"][k], atol=1e-6, rtol=0, msg=k)
    scratch = _tiny_run(tiny, tmp_path / "scratch", "--lr", 1e-12)
    assert scratch.exit_code == 0
    assert not torch.allclose(load(tmp_path / "scratch" / "latest.pt")["model"]["backbone.conv1.weight"],
                              first["model"]["backbone.conv1.weight"])


def test_init_from_refuses_what_does_not_fit(tiny, tmp_path):
    assert _tiny_run(tiny, tmp_path / "deaf", "--no-note").exit_code == 0
    r = _tiny_run(tiny, tmp_path / "x", "--init-from", tmp_path / "deaf" / "latest.pt")
    assert r.exit_code == 2 and "its model differs from the one this data set builds (band_octaves)" in r.output
    r = _tiny_run(tiny, tmp_path / "x", "--init-from", tmp_path / "none.pt")
    assert r.exit_code == 2 and "no such checkpoint" in r.output
    r = _tiny_run(tiny, tmp_path / "x", "--init-from", tmp_path / "deaf" / "latest.pt", "--pretrained",
                  tmp_path / "r.pth")
    assert r.exit_code == 2 and "not both" in r.output
    assert "Traceback" not in r.output


def test_resume_after_interruption_reproduces_the_uninterrupted_run(tiny, tmp_path, monkeypatch):
    base = dict(data=(str(tiny),), epochs=3, batch_size=4, lr=1e-3, warmup_epochs=1, spec_augment=True,
                early_stopping_patience=0)
    train(TrainConfig(output=str(tmp_path / "whole"), **base), show_progress=False)

    from training import checkpoint

    real_save, saves = checkpoint.save, []

    def interrupted(path, payload):  # the process dies right after epoch 1's checkpoints are on disk
        real_save(path, payload)
        saves.append(path.name)
        if payload["state"]["epoch"] == 1 and path.name == "latest.pt":
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(output=str(tmp_path / "cut"), **base), show_progress=False)
    monkeypatch.setattr(checkpoint, "save", real_save)
    result = train(TrainConfig(output=str(tmp_path / "cut"), resume=True, **base), show_progress=False)
    assert result["epochs_run"] == 3 and "latest.pt" in saves

    whole, cut = load(tmp_path / "whole" / "latest.pt"), load(tmp_path / "cut" / "latest.pt")
    assert whole["state"]["step"] == cut["state"]["step"]
    for name, value in whole["model"].items():
        assert torch.equal(value, cut["model"][name]), name
    assert [r["train/loss"] for r in whole["state"]["history"]] == [r["train/loss"] for r in cut["state"]["history"]]


def test_torchrun_two_processes_validate_like_one(tiny, tmp_path):
    import os
    import subprocess
    import sys

    from training.train import validate

    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training",
           "train", "-d", str(tiny), "-o", str(out), "--epochs", "1", "--batch-size", "2", "--device", "cpu"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("1 epochs, best val loss") == 2  # both ranks finish; only rank 0 writes
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 1
    from datagen.dataset import DatasetError
    from training.data import PresetDataset

    assert load(out / "latest.pt")["state"]["step"] == -(-len(PresetDataset(tiny)) // 4)  # 2 ranks x batch 2
    try:
        split, _ = "val", PresetDataset(tiny, split="val")
    except DatasetError:  # a tiny set may hold no validation rows; the trainer then validates on train
        split = "train"
    single = validate(out / "latest.pt", [str(tiny)], split=split)
    for key, value in single.items():  # the all-reduced metrics describe the whole validation set
        assert rows[0][f"val/{key}"] == pytest.approx(value, rel=1e-5, abs=1e-7), key
