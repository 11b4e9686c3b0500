"""`python -m inference benchmark` on the tiny checkpoint: targets, budgets snapshotted from one run, the
summary's arithmetic, resuming, and every bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from datagen.preset import read_vital
from datagen.render import RenderConfig, Renderer, deterministic
from inference.benchmark import BenchmarkConfig, parse_method
from inference.cli import main
from inference.clips import _dataset_jobs, _from_preset, as_heard, list_clips
from inference.metrics import score
from inference.predict import Pipeline
from inference.refine import RefineConfig, refine
from inference.report import markdown, read_lines, summarise

SAW_PLUCK = Path(__file__).resolve().parents[1] / "examples" / "presets" / "saw_pluck.vital"


@pytest.fixture(scope="module")
def pipeline(tiny_checkpoint):
    return Pipeline.from_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """A folder with saw_pluck.vital and a WAV clip of it at G3."""
    folder = tmp_path_factory.mktemp("targets")
    shutil.copy(SAW_PLUCK, folder)
    sf.write(folder / "pluck_g3.wav", Renderer().render(read_vital(SAW_PLUCK), note=55), 44100)
    return folder


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_checkpoint, targets):
    """One CLI run: 2 targets (the preset at C3, the WAV), every method, budgets 0 / 6 / 12."""
    out = tmp_path_factory.mktemp("bench") / "out"
    result = CliRunner().invoke(main, ["benchmark", "-i", str(targets), "-c", str(tiny_checkpoint), "-o", str(out),
                                       "--budgets", "0,6,12", "--notes", "48", "--threads", "2"])
    assert result.exit_code == 0, result.output
    return out


def test_targets_from_presets_wavs_and_a_data_set(pipeline, targets, tiny_checkpoint):
    kw = dict(features=pipeline.features, render=pipeline.render)
    clips = [p.build() for p in list_clips([targets], notes=(48, 60), **kw)]
    assert [c.name for c in clips] == ["pluck_g3", "saw_pluck@48", "saw_pluck@60"]
    assert [c.note for c in clips] == [55, 48, 60]  # the WAV's note is detected; a preset's is stated
    assert clips[0].floor is None and clips[1].floor.shape == clips[1].target.audio.shape
    assert all(c.target.audio.shape == (pipeline.features.n_samples,) for c in clips)
    fixed = _from_preset(deterministic(read_vital(SAW_PLUCK)), name="fixed", note=48, **kw)
    assert max(score(fixed.floor, fixed.target.audio).values()) < 1e-9  # no random phase: no noise floor
    data = tiny_checkpoint.parent.parent / "tiny.h5"
    rows = [build() for _, build in _dataset_jobs(data, split="train", **kw)[:3]]
    assert len(rows) == 3 and all(c.name.startswith("tiny#") and c.note == 60 for c in rows)
    assert all(c.floor.shape == c.target.audio.shape for c in rows)
    some = [c.name for c in list_clips([targets], notes=(48, 60, 72), max_clips=2, seed=1, **kw)]
    assert len(some) == 2 and set(some) < {"pluck_g3", "saw_pluck@48", "saw_pluck@60", "saw_pluck@72"}
    assert some == [c.name for c in list_clips([targets], notes=(48, 60, 72), max_clips=2, seed=1,
                                               **kw)]  # the same subset for the same seed


def test_a_render_is_scored_as_its_target_was_heard(registry):
    """The target's own preset must score at its noise floor: rendered in float it lacked the 16-bit target's
    quantisation noise where the pluck is silent, and mss's log term heard that at twice the floor."""
    from datagen.features import FeatureConfig
    from inference.objective import Objective, render_pool

    saw, features = read_vital(SAW_PLUCK, registry=registry), FeatureConfig()
    clip = _from_preset(saw, name="saw", note=48, features=features, render=RenderConfig())
    with render_pool(1, sample_rate=features.sample_rate) as pool:
        render = Objective(clip.target.audio, note=48, render=RenderConfig(), key_held=clip.played).renders(
            [saw], pool=pool)[0].audio
    floor = score(clip.floor, clip.target.audio)["mss"]
    heard = as_heard(render, features=features)
    assert heard.dtype == np.float32 and heard.shape == clip.target.audio.shape
    # floor ~0.68-0.70, heard 0.61-0.78 over runs (the floor is one draw of the preset's random phases, so not exact)
    assert abs(score(heard, clip.target.audio)["mss"] / floor - 1) < 0.25
    assert score(render, clip.target.audio)["mss"] > 2 * floor  # as the benchmark scored it before: ~1.65
    silence = np.zeros(features.n_samples, np.float32)
    assert np.array_equal(as_heard(silence, features=features), silence)  # prepare refuses it: scored as it is


def test_a_rendered_target_is_the_same_whatever_was_rendered_before(registry):
    """Vital's randomness follows the process's history: rendered in the benchmark's own process, a clip's target
    (and so every score on it) depended on the clips built before it. Now a pure function of (preset, note)."""
    from datagen.features import FeatureConfig

    saw, features, render = read_vital(SAW_PLUCK, registry=registry), FeatureConfig(), RenderConfig()
    first = _from_preset(saw, name="saw", note=48, features=features, render=render)
    Renderer(render).render(saw, note=60)  # the process's random generators move on
    again = _from_preset(saw, name="saw", note=48, features=features, render=render)
    assert np.array_equal(first.target.audio, again.target.audio) and np.array_equal(first.floor, again.floor)
    assert not np.array_equal(first.target.audio, first.floor)  # two recordings: the random phases differ


def test_a_render_is_heard_at_its_targets_recording_level():
    """A gain costs nothing: the same sine recorded quietly (RMS 0.003) is matched by a loud render (RMS 0.3) as
    closely as by a second quiet recording, once the render is heard at the target's level. At its own level its
    quantisation noise sits ~40 dB further under the sine than the target's, and mss's log term hears that."""
    from datagen.features import FeatureConfig, rms
    from inference.clips import wav_target

    features = FeatureConfig()
    t = np.arange(features.n_samples) / features.sample_rate
    sine = np.sin(2 * np.pi * 110.0 * t)
    quiet = 0.003 * np.sqrt(2) * sine
    target = wav_target(quiet, features=features)
    assert target.level == pytest.approx(rms(quiet), rel=0.02)  # as recorded: before prepare normalises it
    floor = score(wav_target(quiet * 1.0001, features=features).audio, target.audio)["mss"]  # another recording
    loud = 100.0 * quiet  # the render, 40 dB louder than the clip
    at_level = score(as_heard(loud, features=features, level=target.level), target.audio)["mss"]
    own = score(as_heard(loud, features=features), target.audio)["mss"]
    assert at_level < 1.5 * floor and own > 2 * at_level  # seen: floor 0.29, at the level 0.32, own level 3.38
    silence = np.zeros(features.n_samples, np.float32)  # no level to scale: left as it is, then refused by prepare
    assert np.array_equal(as_heard(silence, features=features, level=target.level), silence)


def test_snapshots_are_the_states_of_shorter_runs(pipeline, registry):
    """Budget 24 taken from a 48-render run equals a 24-render run with the same seed (CMA-ES asks the same
    populations whatever the budget), so one run gives every budget's result."""
    saw = read_vital(SAW_PLUCK, registry=registry)
    config = RenderConfig(render_length=0.5)
    target = Renderer(config).render(saw.with_values(filter_1_cutoff=0.4), note=48)
    kw = dict(note=48, render=pipeline.render, importance=pipeline.importance, registry=registry,
              show_progress=False)
    long = refine(saw, target, config=RefineConfig(evals=48, threads=2, max_params=6), snapshots=(1, 24, 48), **kw)
    short = refine(saw, target, config=RefineConfig(evals=24, threads=2, max_params=6), **kw)
    assert long.snapshots[24].loss == short.final_loss and long.snapshots[24].evaluations == short.evaluations
    assert long.snapshots[24].preset.continuous == short.preset.continuous
    assert long.snapshots[48].loss == long.final_loss and long.snapshots[1].loss == long.initial_loss
    assert long.snapshots[1].evaluations == 1 and long.snapshots[1].preset is saw


def test_the_run_writes_one_line_per_clip_and_searches_never_lose(run_dir):
    lines = read_lines(run_dir / "clips.jsonl")
    assert [c["clip"] for c in lines] == ["pluck_g3", "saw_pluck@48"]
    for c in lines:
        got = {(r["method"], r["budget"]): r for r in c["records"]}
        searches = ("random", "network+cma", "proposals+portfolio")  # the default methods that search
        assert set(got) == {("init", 0), ("network", 0)} | {(m, b) for m in searches for b in (6, 12)}
        for m in searches:  # more renders never end worse
            assert got[(m, 12)]["objective"] <= got[(m, 6)]["objective"]
        for m in ("network+cma", "proposals+portfolio"):  # both start from the network's prediction
            assert got[(m, 6)]["objective"] <= got[("network", 0)]["objective"]
        assert all(r["metrics"] and set(r["metrics"]) == {"mss", "lsd", "mfcc_l1", "loudness_l1"}
                   for r in c["records"])
    assert lines[0]["floor"] is None  # a WAV has no preset to render twice
    assert lines[1]["floor"]["mss"] > 0.1  # saw_pluck starts its oscillators at random phases
    md = (run_dir / "results.md").read_text()
    assert "| network+cma | 12 |" in md and "noise floor" in md and "network alone / init preset" in md
    assert (run_dir / "results.png").stat().st_size > 10_000
    assert json.loads((run_dir / "summary.json").read_text())["clips"] == 2


def test_a_second_run_resumes_and_a_cut_line_is_redone(run_dir, tiny_checkpoint, targets, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(run_dir, out)
    text = (out / "clips.jsonl").read_text().splitlines()
    (out / "clips.jsonl").write_text(text[0] + "\n" + text[1][:50])  # the second clip was cut mid-line
    args = ["benchmark", "-i", str(targets), "-c", str(tiny_checkpoint), "-o", str(out), "--budgets", "0,6,12",
            "--notes", "48", "--methods", "init,network"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = read_lines(out / "clips.jsonl")
    assert [c["clip"] for c in lines] == ["pluck_g3", "saw_pluck@48"]
    assert lines[0] == read_lines(run_dir / "clips.jsonl")[0]  # kept, not rescored
    assert {r["method"] for r in lines[1]["records"]} == {"init", "network"}  # rescored with this run's methods


def test_kept_presets_are_the_scored_ones(tiny_checkpoint, targets, tmp_path, registry):
    """--keep-presets writes one .vital per record, and each one, rendered as the benchmark renders it, scores
    its record's mss."""
    from inference.objective import Objective, render_pool

    out = tmp_path / "out"
    args = ["benchmark", "-i", str(targets / "saw_pluck.vital"), "-c", str(tiny_checkpoint), "-o", str(out),
            "--budgets", "0,6", "--notes", "48", "--methods", "init,network+cma", "--threads", "1", "--keep-presets"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (line,) = read_lines(out / "clips.jsonl")
    folder = out / "presets" / "saw_pluck@48"
    assert sorted(p.name for p in folder.iterdir()) == ["init@0.vital", "network+cma@6.vital"]
    kept = read_vital(folder / "network+cma@6.vital", registry=registry)
    assert kept.meta["preset_name"] == "saw_pluck@48 network+cma@6"
    record = next(r for r in line["records"] if r["method"] == "network+cma")
    pipeline = Pipeline.from_checkpoint(tiny_checkpoint)
    (clip,) = [c.build() for c in list_clips([targets / "saw_pluck.vital"], features=pipeline.features,
                                             render=pipeline.render, notes=(48,))]
    with render_pool(1, sample_rate=44100) as pool:  # a pristine fork, as the benchmark rendered it
        (rendered,) = Objective(clip.target.audio, note=48, render=pipeline.render, key_held=clip.played).renders(
            [kept], pool=pool)
    heard = as_heard(rendered.audio, features=pipeline.features, level=clip.target.level)
    assert score(heard, clip.target.audio)["mss"] == pytest.approx(record["metrics"]["mss"], rel=1e-4)


def _clip(name, mss_by_method, floor=None):
    return {"clip": name, "note": 60, "floor": floor, "records": [
        {"method": m, "budget": b, "evaluations": b, "objective": 0.0, "seconds": 1.0,
         "metrics": {"mss": v, "lsd": 2 * v, "mfcc_l1": 3 * v, "loudness_l1": 4 * v}}
        for (m, b), v in mss_by_method.items()]}


def test_summary_means_intervals_and_goals_by_hand():
    floor = {"mss": 0.1, "lsd": 0.2, "mfcc_l1": 0.3, "loudness_l1": 0.4}
    clips = [_clip("a", {("init", 0): 4.0, ("network", 0): 2.0, ("cma-init", 500): 2.0, ("network+cma", 500): 1.0},
                   floor),
             _clip("b", {("init", 0): 2.0, ("network", 0): 1.0, ("cma-init", 500): 2.0, ("network+cma", 500): 1.0})]
    s = summarise(clips)
    by = {(e["method"], e["budget"]): e for e in s["table"]}
    assert [(e["method"], e["budget"]) for e in s["table"]] == [("init", 0), ("network", 0), ("cma-init", 500),
                                                              ("network+cma", 500)]  # in the run's order
    assert by[("init", 0)]["mss"]["mean"] == 3.0 and by[("init", 0)]["lsd"]["mean"] == 6.0
    assert by[("init", 0)]["mss"]["low"] >= 2.0 and by[("init", 0)]["mss"]["high"] <= 4.0
    assert by[("cma-init", 500)]["mss"] == {"mean": 2.0, "low": 2.0, "high": 2.0, "n": 2}
    assert s["goals"] == {"network_vs_init_mss": 0.5, "network_cma_vs_cma_init_500_mss": 0.5}
    assert s["noise_floor"]["mss"]["mean"] == 0.1 and s["noise_floor"]["mss"]["n"] == 1
    assert "(50.0% lower; goal >= 25%)" in markdown(s)


def test_bad_config():
    with pytest.raises(ValueError, match="method 'magic': use init, network, mean, random, or <start>"):
        BenchmarkConfig(methods=("init", "magic"))
    with pytest.raises(ValueError, match="method 'network\\+nope'"):
        BenchmarkConfig(methods=("network+nope",))
    assert BenchmarkConfig(methods=("cma-init", "proposals+cma", "init+evolve")).methods[0] == "cma-init"
    assert [parse_method(m) for m in ("samples+evolve", "draws+cma")] == [("samples", "evolve"), ("draws", "cma")]
    with pytest.raises(ValueError, match="start in init, network, proposals, samples, draws"):
        BenchmarkConfig(methods=("bank+evolve",))
    with pytest.raises(ValueError, match="at least 2"):
        BenchmarkConfig(budgets=(0, 1))
    with pytest.raises(ValueError, match=">= 0"):
        BenchmarkConfig(budgets=(-5,))


@pytest.mark.parametrize("extra, message", [
    (["-i", "/nonexistent/folder"], "no such file or folder"),
    (["--methods", "init,magic"], "method 'magic': use init"),
    (["--budgets", "0,abc"], "comma-separated integers"),
    (["--budgets", "1"], "at least 2"),
    (["--notes", "200"], "MIDI notes 0..127"),
    (["-c", "/nonexistent.pt"], "nonexistent.pt"),
])
def test_cli_bad_inputs_are_one_line(extra, message, tiny_checkpoint, targets, tmp_path):
    args = ["benchmark", "-i", str(targets), "-c", str(tiny_checkpoint), "-o", str(tmp_path / "out"), *extra]
    if extra[0] == "-i":
        args = ["benchmark", *extra, "-c", str(tiny_checkpoint), "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_refuses_an_empty_folder_and_an_output_that_is_a_file(tiny_checkpoint, targets, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("x")
    for args, message in ((["-i", str(tmp_path / "empty"), "-o", str(tmp_path / "o")], "no .vital or audio files"),
                          (["-i", str(targets), "-o", str(tmp_path / "file")], "cannot make this output folder")):
        result = CliRunner().invoke(main, ["benchmark", *args, "-c", str(tiny_checkpoint)])
        assert result.exit_code == 2 and message in result.output, result.output
    bad = tmp_path / "noise.wav"
    sf.write(bad, np.zeros(44100, np.float32), 44100)  # digital silence: audio.prepare refuses it
    result = CliRunner().invoke(main, ["benchmark", "-i", str(bad), "-c", str(tiny_checkpoint),
                                       "-o", str(tmp_path / "o2")])
    assert result.exit_code == 2 and "silence" in result.output, result.output


def test_bench_target_scores_pitch_and_length(tmp_path):
    r = CliRunner().invoke(main, ["bench-target", "-i", str(SAW_PLUCK), "--notes", "48", "--key-held", "0.3",
                                  "--length-presets", "1", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["pitch"]["clips"] == 1 and out["pitch_rows"][0]["key"] == 48 and out["pitch_rows"][0]["pitch_class_ok"]
    assert out["length"]["cases"] == 1 and out["length_rows"][0]["error"] <= 0.05
    bad = CliRunner().invoke(main, ["bench-target", "-i", str(SAW_PLUCK), "--notes", "200"])
    assert bad.exit_code == 2 and bad.output == "error: --notes must be MIDI notes 0..127, got '200'\n"


def test_mean_is_the_checkpoints_baseline_decoded(pipeline, tiny_checkpoint, targets, tmp_path):
    """The "mean" method renders the network's predict-the-mean constant: the train split's masked means and
    modes as the trainer stored them, no modulation; a checkpoint without it is refused in one line."""
    import torch

    base = pipeline.baseline
    preset = pipeline.mean_preset()
    cont = pipeline.registry.continuous
    assert len(base["continuous"]) == len(cont) and len(base["categorical"]) == len(pipeline.predicted_categorical)
    assert [preset.continuous[p.name] for p in cont] == pytest.approx(base["continuous"], abs=1e-6)
    for col, k in zip(pipeline.predicted_categorical, base["categorical"]):
        assert preset.categorical[pipeline.registry.categorical[col].name] == k
    assert preset.modulations == ()
    assert parse_method("mean") == ("mean", None)

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    del ckpt["baseline"]
    old = tmp_path / "old.pt"
    torch.save(ckpt, old)
    assert Pipeline.from_checkpoint(old).mean_preset() is None
    result = CliRunner().invoke(main, ["benchmark", "-i", str(targets), "-c", str(old), "-o", str(tmp_path / "out"),
                                       "--methods", "init,mean", "--budgets", "0"])
    last = result.output.strip().splitlines()[-1]
    assert result.exit_code == 2 and result.output.count("error:") == 1, result.output
    assert last.startswith("error: ") and "holds no predict-the-mean baseline" in last
