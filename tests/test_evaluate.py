"""The evaluator on a tiny data set made and trained in the test (CPU): aggregation, baseline, renders, CLI."""

import json
import math
import shutil

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from datagen.dataset import DatasetError, load_catalog, preset_from_row
from datagen.features import FeatureConfig
from datagen.generate import GenerateConfig, generate, label_config
from datagen.preset import init_preset
from datagen.render import RenderConfig
from training.checkpoint import load
from training.cli import main
from training.data import PresetDataset, collate, routed_from_slots
from training.decode import decode
from training.audio import ItemAudio, spectral_distance
from training.evaluate import EvaluateConfig, evaluate
from training.losses import build_mask_spec, masks, routed_sources
from training.metrics import MetricSums, metrics
from training.report import write_report
from training.model import ModelConfig, PresetEstimator, model_config_for
from training.train import TrainConfig, train

N_PRESETS = 12


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """12 presets at one note, with audio: every row lands in the train split (hash-based split; so it does for
    sampler version 1's presets of seed 0)."""
    out = tmp_path_factory.mktemp("evaluate") / "tiny.h5"
    config = GenerateConfig(tier=3, n_presets=N_PRESETS, notes=(60,), sampler_version=1,
                            render=RenderConfig(render_length=0.5, note_length=0.25), features=FeatureConfig(duration=0.5))
    generate(out, config, workers=2, show_progress=False)
    return out


@pytest.fixture(scope="module")
def ckpt_path(tiny, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    train(TrainConfig(data=(str(tiny),), output=str(run), epochs=1, batch_size=4, max_batches_per_epoch=1,
                      spec_augment=False), show_progress=False)
    return run / "best.pt"


@pytest.fixture(scope="module")
def report(tiny, ckpt_path):
    # batch size 5: batches of 5, 5, 2 exercise the aggregation over uneven batches
    return evaluate(EvaluateConfig(checkpoint=str(ckpt_path), data=(str(tiny),), split="all", batch_size=5,
                                   n_render=3, seed=1), show_progress=False)


def _batch(dataset, registry, items):
    return collate([dataset[i] for i in items], n_sources=len(registry.sources),
                   n_destinations=len(registry.destinations))


def perfect_outputs(batch, dataset, items, model_config) -> dict:
    """The forward dict of a model that is exactly right: targets as continuous outputs, +-10 logits at the
    target classes, presence logits > 0 on the target cells decreasing with the slot number (so decoding keeps
    the stored slot order), the target amount/power, +-10 bipolar/stereo logits."""
    b = len(items)

    def one_hot(target, n):
        z = torch.full((b, n), -10.0)
        z[torch.arange(b), target] = 10.0
        return z

    target = batch["modulation"]
    mod = torch.zeros_like(target)
    mod[:, 0] = -10.0
    for k, i in enumerate(items):
        for slot, (s, d, *_) in enumerate(dataset[i]["modulation"]):
            if s >= 0:
                mod[k, 0, int(s), int(d)] = 6.5 - 0.1 * slot  # sigmoid in (0.5, 1), distinct in float32
    mod[:, 1], mod[:, 3] = target[:, 1], target[:, 3]
    mod[:, 2], mod[:, 4] = 20 * target[:, 2] - 10, 20 * target[:, 4] - 10
    return {
        "continuous": batch["continuous"].clone(),
        "categorical": [one_hot(batch["categorical"][:, i], n)
                        for i, n in zip(model_config.predicted_categorical, model_config.categorical_classes)],
        "wavetable": [one_hot(batch["wavetable"][:, o], model_config.n_wavetables) for o in range(3)],
        "modulation": mod,
    }


# ---- aggregation ---------------------------------------------------------------------------------------

def test_perfect_prediction_scores_exactly(tiny, registry):
    ds = PresetDataset(tiny, split=None)
    mc = model_config_for(registry, n_wavetables=len(load_catalog(ds.attrs)) + 1)
    spec = build_mask_spec(registry, tier=3)
    items = list(range(6))
    batch = _batch(ds, registry, items)
    sums = MetricSums(registry=registry, spec=spec, predicted_categorical=mc.predicted_categorical)
    sums.update(perfect_outputs(batch, ds, items, mc), batch)
    r = sums.result()
    n_mod = int((batch["modulation"][:, 0] > 0.5).sum())
    assert n_mod > 0 and r["n_items"] == 6
    assert r["continuous_mse"] == 0.0 and r["continuous_mae"] == 0.0
    assert r["categorical_accuracy"] == 1.0 and r["wavetable_accuracy"] == 1.0
    assert r["modulation_precision"] == 1.0 and r["modulation_recall"] == 1.0
    assert r["modulation_amount_mae"] == 0.0 and (r["modulation_tp"], r["modulation_fp"]) == (n_mod, 0)
    assert set(r["categorical_accuracy_by_param"].values()) <= {1.0, None}
    mask = masks(spec, batch["categorical"], routed_sources(batch["modulation"]))
    assert r["continuous_count"] == int(mask["continuous"].sum())
    # the rows leave some modulator unrouted, so the routes do mask something here
    assert r["continuous_count"] < int(masks(spec, batch["categorical"])["continuous"].sum())
    assert r["wavetable_count"] == int((batch["categorical"][:, list(sums.osc_switch)] == 1).sum())


def test_batches_aggregate_exactly_and_groups_partition(tiny, registry):
    """Two uneven batches give what losses.metrics gives on one batch of all items; groups sum to the whole."""
    ds = PresetDataset(tiny, split=None)
    mc = model_config_for(registry, n_wavetables=len(load_catalog(ds.attrs)) + 1)
    spec = build_mask_spec(registry, tier=3)
    items = list(range(N_PRESETS))
    whole = _batch(ds, registry, items)
    gen = torch.Generator().manual_seed(0)
    out = perfect_outputs(whole, ds, items, mc)
    out["continuous"] = torch.rand(whole["continuous"].shape, generator=gen)
    out["categorical"] = [torch.randn(z.shape, generator=gen) for z in out["categorical"]]
    out["modulation"] = out["modulation"] + torch.randn(out["modulation"].shape, generator=gen) * 3
    sums = MetricSums(registry=registry, spec=spec, predicted_categorical=mc.predicted_categorical)
    for part in (slice(0, 7), slice(7, N_PRESETS)):
        sums.update({k: [t[part] for t in v] if isinstance(v, list) else v[part] for k, v in out.items()},
                    {k: v[part] for k, v in whole.items()})
    r = sums.result()
    ref = metrics(out, whole, spec, mc.predicted_categorical)
    assert r["continuous_mse"] == pytest.approx(ref["continuous_mse"], rel=1e-6)
    assert r["categorical_accuracy"] == pytest.approx(ref["categorical_accuracy"], rel=1e-12)
    assert 0.0 < r["categorical_accuracy"] < 1.0
    assert (r["modulation_tp"], r["modulation_fp"], r["modulation_fn"]) == \
        (ref["modulation_tp"], ref["modulation_fp"], ref["modulation_fn"])
    assert r["modulation_amount_mae"] == pytest.approx(ref["modulation_amount_mae"], rel=1e-6)
    # the closed form of the MAE, in numpy
    m = masks(spec, whole["categorical"], routed_sources(whole["modulation"]))["continuous"].numpy()
    err = np.abs(out["continuous"].numpy().astype(np.float64) - whole["continuous"].numpy())
    assert r["continuous_mae"] == pytest.approx((m * err).sum() / m.sum(), rel=1e-9)
    counts = r["continuous_count_by_group"]
    assert sum(counts.values()) == r["continuous_count"] == int(m.sum())
    assert {"osc_1", "osc_2", "osc_3", "filter_1", "env_1", "lfo_1", "reverb", "global"} <= set(counts)
    weighted = sum(r["continuous_mse_by_group"][g] * n for g, n in counts.items() if n)
    assert weighted / r["continuous_count"] == pytest.approx(r["continuous_mse"], rel=1e-9)
    osc_cols = [i for i, p in enumerate(registry.continuous) if p.module == "osc_2"]
    assert counts["osc_2"] == int(m[:, osc_cols].sum())


# ---- the evaluation on a trained checkpoint ------------------------------------------------------------

def test_report_counts_and_ranges(report, tiny, registry):
    ds = PresetDataset(tiny, split=None)
    assert report["n_items"] == len(ds) == N_PRESETS and report["split"] == "all" and report["tier"] == 3
    with h5py.File(tiny, "r") as f:
        cat = torch.from_numpy(f["categorical"][:].astype(np.int64))
        routed = routed_from_slots(f["modulation"][:], n_sources=len(registry.sources))
    # the stored slots and the dense batch the evaluator sees name the same routed sources
    assert torch.equal(routed, routed_sources(_batch(ds, registry, range(N_PRESETS))["modulation"]))
    m = masks(build_mask_spec(registry, tier=3), cat, routed)
    assert report["continuous_count"] == int(m["continuous"].sum())
    for key in ("categorical_accuracy", "wavetable_accuracy", "modulation_recall"):
        assert 0.0 <= report[key] <= 1.0, key
    assert 0.0 < report["continuous_mse"] <= report["continuous_mae"] < 1.0  # errors in [0, 1]: mse <= mae
    assert all(v is None or 0.0 <= v <= 1.0 for v in report["categorical_accuracy_by_param"].values())
    sd = report["spectral_distance"]
    assert sd["n_render"] == len(sd["items"]) == 3 and sd["n_failed"] == 0 and sd["target"] == "stored audio"
    assert len({e["item"] for e in sd["items"]}) == 3
    assert all(math.isfinite(e["distance"]) and math.isfinite(e["init_distance"]) for e in sd["items"])
    assert sd["mean"] == pytest.approx(np.mean([e["distance"] for e in sd["items"]]))
    json.dumps(report)  # JSON-able as it is
    assert len(report.examples) == 3 and report.examples[0]["target"].shape == (128, 44)


def test_report_matches_one_batch_of_the_model(report, tiny, ckpt_path, registry):
    ckpt = load(ckpt_path)
    mc = ModelConfig.from_dict(ckpt["model_config"])
    model = PresetEstimator(mc)
    model.load_state_dict(ckpt["model"])
    model.eval()
    ds = PresetDataset(tiny, split=None)
    batch = _batch(ds, registry, range(N_PRESETS))
    with torch.no_grad():
        ref = metrics(model(batch["mel"], batch["midi_note"]), batch, build_mask_spec(registry, tier=3),
                      mc.predicted_categorical)
    assert report["continuous_mse"] == pytest.approx(ref["continuous_mse"], rel=1e-4)
    assert report["categorical_accuracy"] == pytest.approx(ref["categorical_accuracy"], abs=1e-9)
    assert report["modulation_fn"] == ref["modulation_fn"] and report["modulation_tp"] == ref["modulation_tp"]


def test_baseline_is_the_masked_train_mean(report, tiny, registry):
    """Every row is in train here, so the baseline predicts the masked column means of these very rows."""
    with h5py.File(tiny, "r") as f:
        cont = f["continuous"][:].astype(np.float64)
        cat = f["categorical"][:].astype(np.int64)
        routed = routed_from_slots(f["modulation"][:], n_sources=len(registry.sources))
    spec = build_mask_spec(registry, tier=3)
    m = masks(spec, torch.from_numpy(cat), routed)
    mc = m["continuous"].numpy().astype(np.float64)
    mean = np.where(mc.sum(0) > 0, (mc * cont).sum(0) / np.maximum(mc.sum(0), 1), cont.mean(0)).astype(np.float32)
    mse = (mc * (cont - mean) ** 2).sum() / mc.sum()
    base = report["baseline"]
    assert base["fitted_on"] == "train" and base["fit_rows"] == N_PRESETS and base["n_items"] == N_PRESETS
    assert base["continuous_mse"] == pytest.approx(mse, rel=1e-9)
    assert base["continuous_count"] == report["continuous_count"]
    # a categorical parameter's baseline accuracy is the share of its (masked) mode
    col = spec.categorical_names.index("filter_1_on")
    mk = m["categorical"][:, col].numpy()
    counts = np.bincount(cat[:, col], weights=mk, minlength=2)
    got = base["categorical_accuracy_by_param"]["filter_1_on"]
    assert got == pytest.approx(counts.max() / mk.sum())


def test_write_report(report, tmp_path):
    paths = write_report(report, tmp_path / "out")
    assert set(paths) == {"report", "spectrograms"}
    assert json.loads(paths["report"].read_text())["n_items"] == N_PRESETS
    assert paths["spectrograms"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plain = write_report(dict(report), tmp_path / "plain")  # a report read back from JSON: no figure
    assert set(plain) == {"report"}


# ---- renders -------------------------------------------------------------------------------------------

def test_perfect_prediction_renders_the_target_exactly(tiny, registry):
    ds = PresetDataset(tiny, split=None)
    catalog = load_catalog(ds.attrs)
    mc = model_config_for(registry, n_wavetables=len(catalog) + 1)
    items = [2]  # a row with 18 modulations, some onto other slots (modulation_N_*)
    batch = _batch(ds, registry, items)
    preset = decode(perfect_outputs(batch, ds, items, mc), registry=registry, catalog=catalog,
                    predicted_categorical=mc.predicted_categorical)[0].preset
    assert preset.modulations == preset_from_row(ds[2], registry=registry, catalog=catalog).modulations
    assert any(m.destination == "modulation_1_power" for m in preset.modulations)  # slot order matters here
    with ItemAudio(ds) as audio:
        target = audio.target(2)
        predicted = audio.render(preset, 2)
        init = audio.render(init_preset(registry), 2)
    assert audio.stored and target.shape == (22050,)
    assert spectral_distance(predicted, target) < 1e-3 and np.array_equal(predicted, target)
    assert spectral_distance(init, target) > 0.5  # the distance does tell sounds apart


def test_targets_rerender_labels_without_stored_audio(tiny, tmp_path):
    bare = tmp_path / "bare.h5"
    shutil.copy(tiny, bare)
    with h5py.File(bare, "a") as f:
        del f["audio"]
    with ItemAudio(PresetDataset(bare, split=None)) as a, h5py.File(tiny, "r") as f:
        assert not a.stored
        rendered = a.target(5)
        stored = f["audio"][5].astype(np.float64) / 32767
    assert np.abs(rendered - stored).max() <= 0.5 / 32767 + 1e-7  # the same audio, up to int16 rounding


def test_spectral_distance_closed_forms():
    t = np.arange(22050) / 44100
    a = np.sin(2 * np.pi * 440 * t)
    assert spectral_distance(a, a) == 0.0
    assert spectral_distance(0.1 * a, a) == pytest.approx(0.0, abs=1e-5)  # RMS-normalised: gain is free
    assert spectral_distance(np.sin(2 * np.pi * 880 * t), a) > 1.0


def test_label_config_of_an_ingested_set():
    render = {"sample_rate": 44100, "velocity": 0.8, "note_length": 0.25, "render_length": 0.5, "mono": True}
    features = FeatureConfig(duration=0.5)
    manifest = {"config": {"notes": [48, 60], "render": render, "features": json.loads(features.to_json()),
                           "store_audio": True, "min_peak": 1e-4}}
    config = label_config({"manifest": json.dumps(manifest), "notes": "[48, 60]",
                           "render_config": json.dumps(render), "feature_config": features.to_json()})
    assert config.notes == (48, 60) and config.render == RenderConfig(**render) and config.features == features


# ---- errors and the CLI --------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(split="dev"), "split must be one of train, val, test, all"),
    (dict(batch_size=0), "batch-size must be positive, got 0"),
    (dict(n_render=-1), "n-render must be >= 0"),
    (dict(max_items=0), "max-items must be positive"),
    (dict(data=()), "at least one data set file"),
])
def test_bad_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EvaluateConfig(**{"checkpoint": "c.pt", "data": ("d.h5",), **kwargs})


def test_features_must_match_the_checkpoint(tiny, ckpt_path, tmp_path):
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["feature_config"] = FeatureConfig(duration=1.0).to_json()
    other = tmp_path / "other.pt"
    torch.save(ckpt, other)
    with pytest.raises(DatasetError, match=r"features differ from the checkpoint's: duration 0.5 \(checkpoint: 1.0\)"):
        evaluate(EvaluateConfig(checkpoint=str(other), data=(str(tiny),), split="all"), show_progress=False)


def test_cli_evaluate(tiny, ckpt_path, tmp_path):
    out = tmp_path / "eval"
    r = CliRunner().invoke(main, ["evaluate", "-c", str(ckpt_path), "-d", str(tiny), "--split", "all", "-o", str(out),
                                  "--max-items", "4", "--n-render", "1", "--batch-size", "3"])
    assert r.exit_code == 0, r.output
    assert "4 items (all): continuous MSE" in r.output and "spectral distance" in r.output
    d = json.loads((out / "report.json").read_text())
    assert d["n_items"] == 4 and d["spectral_distance"]["n_render"] == 1 and (out / "spectrograms.png").is_file()


def _one_line_error(result, match):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and match in lines[0], result.output
    assert "Traceback" not in result.output


def test_cli_bad_inputs(tiny, ckpt_path, tmp_path):
    run = lambda *args: CliRunner().invoke(main, ["evaluate", *map(str, args), "-o", str(tmp_path / "x")])  # noqa: E731
    _one_line_error(run("-c", tmp_path / "none.pt", "-d", tiny), "no such checkpoint")
    _one_line_error(run("-c", ckpt_path, "-d", tmp_path / "none.h5"), "no such data set")
    _one_line_error(run("-c", ckpt_path, "-d", tiny, "--split", "test"), "no rows in split 'test'")
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["registry_fingerprint"] = "0000000000000000"
    other = tmp_path / "other.pt"
    torch.save(ckpt, other)
    _one_line_error(run("-c", other, "-d", tiny), "trained for registry 0000000000000000")
    (tmp_path / "file").write_text("")
    r = CliRunner().invoke(main, ["evaluate", "-c", str(ckpt_path), "-d", str(tiny), "-o", str(tmp_path / "file")])
    _one_line_error(r, "exists and is not a folder")
    assert not (tmp_path / "x").exists()
