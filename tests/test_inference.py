"""Inference on a tiny checkpoint trained in the test (CPU): predict, export, refine, audible_params, the CLI."""

import itertools
import json
import math
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from datagen.features import FeatureConfig, log_mel
from datagen.preset import Modulation, read_vital
from datagen.registry import MODULATION_SLOTS
from datagen.render import RenderConfig, Renderer, deterministic
from inference import export
from inference import predict as predict_module
from inference.audio import prepare
from inference.cli import main
from inference.predict import Pipeline
from datagen.isolation import INJECT_SEGFAULT_ENV
from datagen.pool import RenderPool
from inference.objective import FAILED_LOSS, Objective
from inference.refine import RefineConfig, refine
from inference.search.space import audible_params
from tests.conftest import perturbed, require_shared_presets, shared_presets
from training.checkpoint import CheckpointError

SAW_PLUCK = Path(__file__).resolve().parents[1] / "examples" / "presets" / "saw_pluck.vital"
ROUTES = (Modulation(source="lfo_1", destination="filter_1_cutoff", amount=0.5),
          Modulation(source="env_2", destination="osc_1_level", amount=-0.25, bipolar=True, power=2.0, stereo=True),
          Modulation(source="macro_control_1", destination="modulation_1_amount", amount=0.375))


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return tiny_checkpoint


@pytest.fixture(scope="module")
def pipeline(ckpt):
    return Pipeline.from_checkpoint(ckpt)


@pytest.fixture(scope="module")
def saw(registry):
    return read_vital(SAW_PLUCK, registry=registry)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, saw):
    """2 s renders of saw_pluck at C3 and G3 (each on a fresh Synth), in a folder of their own."""
    folder = tmp_path_factory.mktemp("clips")
    for note in (48, 55):
        sf.write(folder / f"c{note}.wav", Renderer().render(saw, note=note), 44100)
    return folder


@pytest.fixture(scope="module")
def target(pipeline, clips):
    return prepare(clips / "c48.wav", features=pipeline.features)


@pytest.fixture(scope="module")
def prediction(pipeline, target):
    return pipeline.predict(target)


# ---- predict -------------------------------------------------------------------------------------------

def test_predict_returns_a_whole_preset_and_the_note(pipeline, target, prediction, registry):
    assert pipeline.features == FeatureConfig() and pipeline.tier == 3
    assert target.note.midi == 48 and target.note.pitched and prediction.note == target.note
    preset = prediction.preset
    assert set(preset.continuous) == {p.name for p in registry.continuous}
    assert set(preset.categorical) == {p.name for p in registry.categorical}
    assert len(preset.modulations) <= MODULATION_SLOTS
    assert len(prediction.modulation_confidence) == len(preset.modulations)
    assert list(prediction.modulation_confidence) == sorted(prediction.modulation_confidence, reverse=True)
    assert set(prediction.confidence) == {registry.categorical[i].name for i in pipeline.predicted_categorical}
    assert all(0 < c <= 1 for c in prediction.confidence.values()) and len(prediction.wavetable_confidence) == 3
    assert prediction.mel.shape == (128, 173)
    assert pipeline.predict(target).preset == preset  # eval mode: no dropout, the same answer twice


def test_predict_threshold_reaches_the_decoder(pipeline, target):
    full = pipeline.predict(target, threshold=0.0)  # every cell passes: the 64 most confident are kept
    with torch.inference_mode():
        logits = pipeline.model(torch.from_numpy(full.mel)[None, None], torch.tensor([target.note.midi]))["modulation"][0, 0]
    # the decoder reads probabilities: the logits less log(pos_weight), the trainer's default 100 here
    assert pipeline.pos_weight == 100.0
    presence = torch.sigmoid(logits - math.log(100.0))
    assert len(full.preset.modulations) == 64
    assert full.modulation_confidence == pytest.approx(torch.sort(presence.flatten(), descending=True).values[:64]
                                                       .tolist(), abs=1e-6)


def test_predict_refuses_another_sample_rate(pipeline, target):
    with pytest.raises(ValueError, match="target is at 22050 Hz, the model wants 44100"):
        pipeline.predict(replace(target, sample_rate=22050))


def test_checkpoint_for_another_registry_is_refused(ckpt, tmp_path):
    data = torch.load(ckpt, weights_only=True)
    data["registry_fingerprint"] = "0000000000000000"
    other = tmp_path / "other.pt"
    torch.save(data, other)
    with pytest.raises(CheckpointError, match="trained for registry 0000000000000000, the installed vita has"):
        Pipeline.from_checkpoint(other)


def test_missing_default_checkpoint_says_pass_c(monkeypatch, tmp_path, clips):
    monkeypatch.setattr(predict_module, "default_checkpoint", lambda: tmp_path / "nothing" / "model.pt")
    with pytest.raises(CheckpointError, match="no default model in this install .*; pass a checkpoint with -c"):
        Pipeline.from_checkpoint()
    r = CliRunner().invoke(main, ["infer", "-i", str(clips / "c48.wav"), "-o", str(tmp_path / "o.vital")],
                           catch_exceptions=False)
    one_line_error(r, "pass a checkpoint with -c")


# ---- export --------------------------------------------------------------------------------------------

def test_export_writes_a_vital_file_that_sounds_the_same(init, registry, tmp_path):
    # a sane preset with routes by hand: the tiny model's prediction may route nothing, or be silent at 48
    preset = replace(perturbed(registry, init, 4), modulations=ROUTES)
    path = export.export(preset, tmp_path / "out.vital", name="clip (vital-match)", comments="from clip.wav",
                         registry=registry)
    assert path == tmp_path / "out.vital" and [p.name for p in tmp_path.iterdir()] == ["out.vital"]  # no .tmp
    doc = json.loads(path.read_text())
    assert doc["synth_version"] == "1.5.5"
    assert (doc["preset_name"], doc["author"], doc["comments"]) == \
        ("clip (vital-match)", "vital-match", "from clip.wav")
    s = doc["settings"]
    assert s["modulations"][:3] == [{"source": m.source, "destination": m.destination} for m in ROUTES]
    assert all(slot == {"source": "", "destination": ""} for slot in s["modulations"][3:])
    assert [(s[f"modulation_{i}_amount"], s[f"modulation_{i}_bipolar"], s[f"modulation_{i}_power"],
             s[f"modulation_{i}_stereo"]) for i in (1, 2, 3, 4)] == \
        [(0.5, 0.0, 0.0, 0.0), (-0.25, 1.0, 2.0, 1.0), (0.375, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0)]

    back = read_vital(path, registry=registry)
    assert back.meta["preset_name"] == "clip (vital-match)" and back.meta["author"] == "vital-match"
    assert back.modulations == ROUTES and back.categorical == preset.categorical
    assert max(abs(back.continuous[k] - v) for k, v in preset.continuous.items()) < 1e-6
    # A fresh Synth per render: a reused one smooths its controls from the previous preset's values at the
    # start of the next note, and Vital's generators depend on process history (see CLAUDE.md).
    a = Renderer(registry=registry).render(deterministic(preset), note=48)
    b = Renderer(registry=registry).render(deterministic(back), note=48)
    assert np.abs(a).max() > 0
    assert np.abs(log_mel(a) - log_mel(b)).max() < 1e-3


def test_note_names():
    assert [export.note_name(m) for m in (0, 48, 60, 61, 127)] == ["C-1", "C3", "C4", "C#4", "G9"]


# ---- refine --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def task(saw):
    """saw_pluck's render at C3 as the target, saw_pluck with filter cutoff and decay moved as the start."""
    start = saw.with_values(filter_1_cutoff=0.8 * saw.continuous["filter_1_cutoff"],
                            env_1_decay=0.7 * saw.continuous["env_1_decay"])
    return start, Renderer().render(deterministic(saw), note=48)


@pytest.fixture(scope="module")
def pool():
    with RenderPool(workers=2) as p:
        yield p


def loss_of(preset, audio, pool) -> float:
    return Objective(audio, note=48, render=RenderConfig()).scores([preset], pool=pool)[0][0]


def refine_task(task, registry, **config):
    start, audio = task
    return refine(start, audio, note=48, render=RenderConfig(), importance=np.ones(len(registry.continuous)),
                  registry=registry, config=RefineConfig(threads=2, seed=0, **config), show_progress=False)


@pytest.fixture(scope="module")
def refined(task, registry):
    return refine_task(task, registry, evals=30)


def test_refine_improves_within_its_budget_and_moves_only_its_params(refined, task, registry, pool):
    start, audio = task
    r = refined
    assert 1 < r.evaluations <= 30 and r.failures == 0
    assert r.initial_loss == loss_of(start, audio, pool)  # a repeatable objective, whichever pool renders it
    assert r.final_loss < r.initial_loss and r.history[0] == r.initial_loss and r.history[-1] == r.final_loss
    assert list(r.history) == sorted(r.history, reverse=True)
    assert r.params == tuple(audible_params(start, registry=registry, importance=np.ones(len(registry.continuous)),
                                            limit=48))
    moved = {k for k, v in r.preset.continuous.items() if v != start.continuous[k]}
    assert moved and moved <= set(r.params)
    assert replace(r.preset, continuous=start.continuous) == start  # categorical, routes, tables, meta: untouched
    assert loss_of(r.preset, audio, pool) == r.final_loss  # loaded whole, it sounds as it did as a delta


def test_refine_same_seed_same_result(refined, task, registry):
    again = refine_task(task, registry, evals=30)
    assert again.final_loss == refined.final_loss and again.preset == refined.preset


def test_refine_survives_segfaults_mid_search(task, registry, monkeypatch):
    # a real SIGSEGV in the render of evaluation 4 (the pool's workers read the variable when spawned)
    monkeypatch.setenv(INJECT_SEGFAULT_ENV, "evaluation 4/")
    r = refine_task(task, registry, evals=10)  # the start, then one population of 9
    assert r.evaluations == 10 and r.failures == 1
    assert r.final_loss <= r.initial_loss < FAILED_LOSS

    monkeypatch.setenv(INJECT_SEGFAULT_ENV, "evaluation ")  # every render crashes
    r = refine_task(task, registry, evals=10)
    assert r.failures == r.evaluations == 10 and r.initial_loss == r.final_loss == FAILED_LOSS
    assert r.preset is task[0]  # nothing beat the start: the start comes back


def test_silence_scores_as_a_failed_render(task, pool):
    """Each clip's level is normalised, so silence would cost only ~1 (the target's spectral convergence) and beat
    every sounding candidate on a short hit; it fails instead. A quiet render is still a sound."""
    start, audio = task
    objective = Objective(audio, note=48, render=RenderConfig())
    assert objective.distance(np.zeros_like(audio)) == FAILED_LOSS
    assert objective.distance(np.full_like(audio, 1e-9)) == FAILED_LOSS
    assert objective.distance(audio) < 0.05
    assert objective.distance(1e-6 * audio) == pytest.approx(objective.distance(audio), abs=1e-3)
    silent = start.with_values(osc_1_on=0, osc_2_on=0, osc_3_on=0, sample_on=0)  # nothing sounds
    assert objective.scores([silent], pool=pool) == [(FAILED_LOSS, True)]


def test_refine_timeout_stops_early(task, registry):
    r = refine_task(task, registry, evals=500, timeout=1e-6)
    assert r.evaluations == 1 and r.preset is task[0] and r.final_loss == r.initial_loss


# ---- audible_params ------------------------------------------------------------------------------------

def names_of(registry, prefix):
    return [p.name for p in registry.continuous if p.name.startswith(prefix)]


def test_audible_params_follow_switches_and_routes(registry, init):
    ones = np.ones(len(registry.continuous))
    assert init.categorical["filter_1_on"] == 0 and init.categorical["osc_2_on"] == 0 and init.modulations == ()
    every = len(registry.continuous)
    off = audible_params(init, registry=registry, importance=ones, limit=every)
    assert not any(n.startswith(("filter_1_", "osc_2_", "lfo_", "random_", "env_3_")) for n in off)
    assert "osc_1_level" in off and "env_1_attack" in off and "volume" in off
    on = audible_params(init.with_values(filter_1_on=1), registry=registry, importance=ones, limit=every)
    assert set(on) - set(off) == set(names_of(registry, "filter_1_")) and len(names_of(registry, "filter_1_")) == 12
    into_lfo = replace(init, modulations=(Modulation(source="env_2", destination="lfo_1_frequency", amount=0.5),))
    assert audible_params(into_lfo, registry=registry, importance=ones, limit=every) == off  # lfo_1 modulates nothing
    from_lfo = replace(init, modulations=(Modulation(source="lfo_1", destination="osc_1_level", amount=0.5),))
    routed = audible_params(from_lfo, registry=registry, importance=ones, limit=every)
    assert set(routed) - set(off) == set(names_of(registry, "lfo_1_")) and len(names_of(registry, "lfo_1_")) == 7
    everything = init.with_values(**{n: 1 for n in init.categorical if n.endswith("_on")})
    assert not any(n.endswith("_random_phase") for n in
                   audible_params(everything, registry=registry, importance=ones, limit=every) + off)
    assert "osc_1_random_phase" in names_of(registry, "osc_1_")  # a continuous control of a module that is on


def test_audible_params_order_and_limit(registry, init):
    names = [p.name for p in registry.continuous]
    ones = np.ones(len(names))
    off = audible_params(init, registry=registry, importance=ones, limit=len(names))
    assert off == [n for n in names if n in set(off)]  # equal importance: registry order
    weights = ones.copy()
    weights[names.index("env_1_release")] = 100.0
    weights[names.index("osc_1_level")] = 50.0
    weights[names.index("filter_1_cutoff")] = 1000.0  # filter 1 is off: importance cannot bring it in
    ranked = audible_params(init, registry=registry, importance=weights, limit=len(names))
    assert ranked[:2] == ["env_1_release", "osc_1_level"] and "filter_1_cutoff" not in ranked
    assert ranked[2:] == [n for n in off if n not in ("env_1_release", "osc_1_level")]
    assert audible_params(init, registry=registry, importance=weights, limit=3) == ranked[:3]


# ---- the infer command ---------------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(main, ["infer", *map(str, args)], catch_exceptions=False)


def one_line_error(result, match):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and match in lines[0], result.output
    assert "Traceback" not in result.output


def test_infer_writes_the_preset_and_json(clips, ckpt, tmp_path, registry):
    out = tmp_path / "out.vital"
    r = invoke("-i", clips / "c48.wav", "-o", out, "-c", ckpt, "--json")
    assert r.exit_code == 0, r.output
    back = read_vital(out, registry=registry)
    assert back.meta["preset_name"] == "c48 (vital-match)" and "refined" not in back.meta["comments"]
    d = json.loads(r.stdout)
    assert d["checkpoint"] == str(ckpt) and d["failed"] == [] and len(d["results"]) == 1
    res = d["results"][0]
    assert res["output"] == str(out) and res["note"]["midi"] == 48 and res["note"]["name"] == "C3"
    assert res["refinement"] is None and set(res["timings"]) == {"prepare", "predict", "export"}
    # saw_pluck released after 1.5 s (RenderConfig's default note length)
    assert (res["held_to_end"], res["died_away"]) == (False, None) and res["key_held"] == pytest.approx(1.5, abs=0.05)
    assert len(res["parameters"]) == len(registry.params) == 452
    assert all(res["parameters"][p.name] == pytest.approx(back.raw(p.name, registry), rel=1e-6, abs=1e-6)
               for p in registry.params)


REFINED = re.compile(r"refined spectral distance ([0-9.]+) -> ([0-9.]+) in (\d+) renders")


@pytest.fixture(scope="module")
def refined_cli(clips, ckpt, tmp_path_factory):
    """One `infer --refine` run writing all four outputs, shared by two tests (a refinement is ~16 renders).
    Its clip: the first real preset rendered at C4 when the shared presets are there, else saw_pluck at C3."""
    folder = tmp_path_factory.mktemp("refined")
    real, clip = shared_presets(), clips / "c48.wav"
    if real:
        clip = folder / "real.wav"
        sf.write(clip, Renderer().render(read_vital(real[0]), note=60), 44100)
    paths = {ext: folder / f"x.{ext}" for ext in ("vital", "wav", "png", "md")}
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ANTHROPIC_API_KEY", raising=False)  # the offline tutorial: no network in tests
        r = invoke("-i", clip, "-o", paths["vital"], "-c", ckpt, "--refine", "--refine-evals", 20, "--threads", 2,
                   "--render", paths["wav"], "--plot", paths["png"], "--tutorial", paths["md"])
    return {"run": r, **paths}


def test_infer_refine_render_plot_tutorial(refined_cli, registry):
    r = refined_cli["run"]
    assert r.exit_code == 0, r.output
    assert "tutorial: offline template" in r.stdout
    initial, final, renders = REFINED.search(r.stdout).groups()
    assert 1 < int(renders) <= 20 and float(final) <= float(initial)  # the start, then whole populations
    assert f"refined {renders} renders" in read_vital(refined_cli["vital"], registry=registry).meta["comments"]
    audio, sr = sf.read(refined_cli["wav"])
    assert sr == 44100 and audio.shape == (88200,) and np.abs(audio).max() <= 10 ** (-1 / 20) + 1e-4
    assert refined_cli["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert refined_cli["md"].read_text().startswith("#")


def test_infer_folder(clips, ckpt, tmp_path):
    out = tmp_path / "presets"
    r = invoke("-i", clips, "-o", out, "-c", ckpt)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["c48.vital", "c55.vital"]
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{clips / 'c48.wav'}: C3 (") and lines[0].endswith(
        f"-> {out / 'c48.vital'}") and lines[1].startswith(f"{clips / 'c55.wav'}: G3 (")


def test_infer_folder_with_a_bad_file(clips, ckpt, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(clips, folder)
    (folder / "b_notes.wav").write_text("not audio at all\n")
    r = invoke("-i", folder, "-o", tmp_path / "presets", "-c", ckpt)
    assert r.exit_code == 2, r.output
    assert sorted(p.name for p in (tmp_path / "presets").iterdir()) == ["c48.vital", "c55.vital"]
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "b_notes.wav: not an audio file" in errors[0]
    assert errors[1] == "error: 1 of 3 inputs failed" and "Traceback" not in r.output


@pytest.mark.parametrize("case, message", [
    ("missing input", "missing.wav: no such file"),
    ("text input", "notes.txt: not an audio file soundfile can read"),
    ("not .vital", "unsupported file type '.json'; use .vital"),
    ("missing folder", "does not exist"),
    ("missing checkpoint", "nothing.pt: no such checkpoint"),
    ("text checkpoint", "notes.pt: not a checkpoint (not a PyTorch file"),
])
def test_infer_bad_inputs(case, message, clips, ckpt, tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "notes.pt").write_text("hello\n")
    args = {"-i": clips / "c48.wav", "-o": tmp_path / "out.vital", "-c": ckpt}
    args.update({
        "missing input": {"-i": tmp_path / "missing.wav"},
        "text input": {"-i": tmp_path / "notes.txt"},
        "not .vital": {"-o": tmp_path / "out.json"},
        "missing folder": {"-o": tmp_path / "no" / "out.vital"},
        "missing checkpoint": {"-c": tmp_path / "nothing.pt"},
        "text checkpoint": {"-c": tmp_path / "notes.pt"},
    }[case])
    r = invoke(*itertools.chain.from_iterable(args.items()))
    one_line_error(r, message)
    assert not (tmp_path / "out.vital").exists()


def test_end_to_end_with_a_real_preset(refined_cli, registry):
    """The first real preset at C4 -> infer --refine -> the .vital reloads in vita and makes sound."""
    require_shared_presets()  # skips with the reason when ../shared/presets is absent
    assert refined_cli["run"].exit_code == 0, refined_cli["run"].output
    assert "real.wav: " in refined_cli["run"].stdout
    audio = Renderer(registry=registry).render(read_vital(refined_cli["vital"], registry=registry), note=60)
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    # The two-batch model's guess is quiet (around -70 dBFS); a broken export renders digital silence or NaN.
    assert np.isfinite(audio).all() and rms > 1e-5


def test_exported_half_checkpoint_predicts_like_the_full_one(ckpt, clips, tmp_path):
    from training.cli import main as training_main

    slim = tmp_path / "slim.pt"
    r = CliRunner().invoke(training_main, ["export", "-c", str(ckpt), "-o", str(slim)])
    assert r.exit_code == 0, r.output
    assert slim.stat().st_size < 0.2 * Path(ckpt).stat().st_size  # no optimizer state, float16 weights
    payload = torch.load(slim, weights_only=True)
    assert not set(payload) & {"optimizer", "scheduler", "rng", "state"} and payload["trained"]["half"]
    assert all(v.dtype != torch.float32 for v in payload["model"].values())
    full, half = Pipeline.from_checkpoint(ckpt), Pipeline.from_checkpoint(slim)
    target = prepare(clips / "c48.wav", features=full.features)
    a, b = full.predict(target), half.predict(target)
    cont = np.array(list(a.preset.continuous.values())) - np.array(list(b.preset.continuous.values()))
    assert np.abs(cont).max() < 0.02  # float16 weights move the sigmoid outputs by < 2% of a range
    r = CliRunner().invoke(training_main, ["export", "-c", str(tmp_path / "none.pt"), "-o", str(slim)])
    assert r.exit_code == 2 and "no such checkpoint" in r.output


# ---- proposals -------------------------------------------------------------------------------------------

def test_proposals_split_and_order(pipeline, target, prediction):
    from inference.proposals import proposals, split

    assert split(32) == {"network": 15, "bank": 15, "sampler": 2}
    assert split(32, sources=("network", "sampler")) == {"network": 30, "bank": 0, "sampler": 2}  # no bank
    assert split(32, sources=("sampler",)) == {"network": 0, "bank": 0, "sampler": 32}
    assert split(3) == {"network": 2, "bank": 1, "sampler": 0}  # the network gets the odd one; few: no draws
    assert split(1) == {"network": 1, "bank": 0, "sampler": 0}
    with pytest.raises(ValueError, match="proposal sources"):
        split(8, sources=("network", "oracle"))
    found = proposals(target, pipeline, n=32, prediction=prediction, seed=3)
    assert len(found) == 32 and found[0] is prediction.preset  # the argmax first: the reference
    samples = found[1:30]  # network samples: drawn from the heads' distributions, so not all the argmax
    assert any(s.categorical != prediction.preset.categorical for s in samples)
    assert found[30].name.startswith("tier3 seed7000104 #0")  # then sampler draws, seeds of their own
    again = proposals(target, pipeline, n=32, prediction=prediction, seed=3)
    assert [p.categorical for p in again] == [p.categorical for p in found]  # a pure function of the seed
    draws = proposals(target, pipeline, n=4, prediction=prediction, seed=3, sources=("sampler",))  # no network
    assert [p.name.split(" ")[:3] for p in draws] == [["tier3", "seed7000104", f"#{i}"] for i in range(4)]
