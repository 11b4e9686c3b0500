"""Each bad input named by the robustness issue ends in one `error:` line (exit 2), never a traceback: malformed
presets (render, ingest), incomplete data sets (train), incomplete or code-carrying checkpoints (infer), and
click's usage errors."""

import json
import shutil
import warnings
from pathlib import Path

import h5py
import pytest
import torch
from click.testing import CliRunner

from datagen.cli import main as datagen_main
from inference.cli import main as inference_main
from training.checkpoint import CheckpointError, load
from training.cli import main as training_main

SAW_PLUCK = Path(__file__).resolve().parents[1] / "examples" / "presets" / "saw_pluck.vital"


def run(main, *args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_error(result, *fragments) -> str:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and all(f in errors[0] for f in fragments), result.output
    assert "Traceback" not in result.output and "Usage:" not in result.output
    return errors[0]


def malformed(kind: str) -> str:
    """saw_pluck.vital's text with one malformed field."""
    doc = json.loads(SAW_PLUCK.read_text())
    s = doc["settings"]
    if kind == "string amount":
        s["modulations"][0] = {"source": "lfo_1", "destination": "filter_1_cutoff"}
        s["modulation_1_amount"] = "half"
    elif kind == "string value":
        s["filter_1_cutoff"] = "loud"
    elif kind in ("400-digit", "5000-digit"):
        s["osc_1_level"] = "__BIG__"
    text = json.dumps(doc)
    digits = {"400-digit": 400, "5000-digit": 5000}.get(kind)
    return text.replace('"__BIG__"', "9" * digits) if digits else text


@pytest.mark.parametrize("kind, fragments", [
    ("string amount", ["modulation_1_amount has non-numeric value 'half'"]),
    ("string value", ["parameter filter_1_cutoff has non-numeric value 'loud'"]),
    ("400-digit", ["parameter osc_1_level is out of range (a 1329-bit integer)"]),
    ("5000-digit", ["not a Vital preset (Exceeds the limit (4300 digits) for integer string conversion"]),
])
def test_render_of_a_malformed_preset_names_the_key(kind, fragments, tmp_path):
    path = tmp_path / "bad.vital"
    path.write_text(malformed(kind))
    line = one_error(run(datagen_main, "render", path, "-o", tmp_path / "o.wav"), str(path), *fragments)
    assert len(line) < 300 and not (tmp_path / "o.wav").exists()


def test_render_refuses_other_formats_and_its_own_input(tmp_path):
    path = tmp_path / "p.vital"
    shutil.copy(SAW_PLUCK, path)
    one_error(run(datagen_main, "render", path, "-o", tmp_path / "o.mp3"), "unsupported file type '.mp3'; use .wav")
    link = tmp_path / "p.wav"
    link.symlink_to(path)  # a .wav name that is the preset itself
    one_error(run(datagen_main, "render", path, "-o", link), "is the input preset")
    assert path.read_text() == SAW_PLUCK.read_text()


@pytest.mark.slow
def test_ingest_skips_malformed_presets_and_writes_the_good_ones(tmp_path):
    folder = tmp_path / "presets"
    folder.mkdir()
    shutil.copy(SAW_PLUCK, folder / "good.vital")
    for kind in ("string amount", "400-digit", "5000-digit"):
        (folder / f"{kind}.vital").write_text(malformed(kind))
    out = tmp_path / "real.h5"
    r = run(datagen_main, "ingest", folder, "-o", out, "--notes", "60", "--length", "0.5", "--note-length", "0.3",
            "--quiet")
    assert r.exit_code == 0, r.output
    warned = [line for line in r.output.splitlines() if line.startswith("WARNING")]
    for kind in ("string amount", "400-digit", "5000-digit"):  # one line each, naming the file and the reason
        assert len([w for w in warned if f"{kind}.vital" in w and "skipped" in w]) == 1, r.output
    assert "1 of 4 presets, 1 rows" in r.output and "skipped {'unreadable': 3}" in r.output
    with h5py.File(out) as f:
        assert json.loads(f.attrs["preset_files"])[f["preset_index"][0]] == "good.vital"


@pytest.fixture(scope="module")
def tiny_data(tiny_checkpoint):
    return tiny_checkpoint.parent.parent / "tiny.h5"


@pytest.mark.parametrize("missing", ["mel", "continuous", "split"])
def test_train_on_a_data_set_missing_a_dataset_names_it(missing, tiny_data, tmp_path):
    data = tmp_path / "cut.h5"
    shutil.copy(tiny_data, data)
    with h5py.File(data, "a") as f:
        del f[missing]
    r = run(training_main, "train", "-d", data, "-o", tmp_path / "run", "--epochs", 1)
    one_error(r, str(data), f"no '{missing}' dataset(s) in this file")


@pytest.fixture(scope="module")
def ckpt_dict(tiny_checkpoint):
    return torch.load(tiny_checkpoint, weights_only=True)


@pytest.mark.parametrize("case, fragments", [
    ("no feature_config", ["incomplete checkpoint, no feature_config"]),
    ("no render_config", ["incomplete checkpoint, no render_config"]),
    ("corrupt catalog", ["corrupt wavetable_catalog (not a wavetable catalog"]),
    ("catalog not JSON", ["corrupt wavetable_catalog (wavetable catalog is not JSON"]),
    ("bad feature_config", ["corrupt feature_config"]),
])
def test_an_incomplete_checkpoint_is_one_line(case, fragments, ckpt_dict, tmp_path):
    ckpt = dict(ckpt_dict)
    if case == "no feature_config":
        del ckpt["feature_config"]
    elif case == "no render_config":
        del ckpt["render_config"]
    elif case == "corrupt catalog":
        ckpt["wavetable_catalog"] = json.dumps({"format": "something else", "tables": []})
    elif case == "catalog not JSON":
        ckpt["wavetable_catalog"] = "{not json"
    else:
        ckpt["feature_config"] = json.dumps({"n_mels": "many", "colour": 3})
    path = tmp_path / "c.pt"
    torch.save(ckpt, path)
    r = run(inference_main, "infer", "-i", SAW_PLUCK.parents[1] / "curious_bass_c2.wav", "-o", tmp_path / "x.vital",
            "-c", path)
    one_error(r, str(path), *fragments)


class Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_a_code_carrying_checkpoint_is_refused_without_advice_or_warning(tmp_path, capfd):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "x": Payload()}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning torch prints would fail here
        with pytest.raises(CheckpointError):
            load(path)
    r = run(inference_main, "infer", "-i", SAW_PLUCK.parents[1] / "curious_bass_c2.wav", "-o", tmp_path / "x.vital",
            "-c", path)
    line = one_error(r, "refused, it holds Python objects (code)")
    captured = capfd.readouterr()
    assert "weights_only" not in r.output + line + captured.err and "this ran" not in r.output + captured.out
    assert "UserWarning" not in captured.err + r.output


@pytest.mark.parametrize("content, fragment", [(b"hello\n", "not a checkpoint"), (b"", "not a checkpoint")])
def test_a_file_that_is_not_a_checkpoint(content, fragment, tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"{fragment} \\(not a PyTorch file"):
        load(path)


@pytest.mark.parametrize("main, args, fragments", [
    (datagen_main, ["bench-render", "--presets", "{t}/missing"], ["--presets", "missing: no such folder"]),
    (datagen_main, ["bench-render", "--presets", "{t}/file.txt"], ["file.txt: is not a folder"]),
    (datagen_main, ["render", "--note", "200", "x.vital", "-o", "o.wav"],
     ["Invalid value for '--note'", "(see main render --help)"]),
    (inference_main, ["infer", "-i", "x.wav"], ["Missing option '-o'"]),
    (training_main, ["train", "--bogus"], ["No such option '--bogus' (see main train --help)"]),
])
def test_usage_errors_are_one_error_line(main, args, fragments, tmp_path):
    (tmp_path / "file.txt").write_text("x\n")
    one_error(run(main, *[a.format(t=tmp_path) for a in args]), *fragments)


@pytest.mark.parametrize("main, target, args, domain", [
    (datagen_main, "datagen.generate.generate", ["generate", "-n", 2, "-o", "{t}/x.h5"], "config"),
    (datagen_main, "datagen.importance.compute_weights", ["compute-weights", "{t}/x.h5"], "config"),
    (datagen_main, "datagen.ingest.ingest", ["ingest", "{t}", "-o", "{t}/x.h5"], "config"),
    (datagen_main, "datagen.summary.open_checked", ["precompute-mels", "{t}/x.h5"], "config"),
    (training_main, "training.train.train", ["train", "-d", "{t}/x.h5", "-o", "{t}/run"], "config"),
    (training_main, "training.evaluate.evaluate", ["evaluate", "-c", "{t}/c.pt", "-d", "{t}/x.h5", "-o", "{t}/ev"],
     "config"),
    (inference_main, "inference.notes_benchmark.run", ["bench-target", "-i", SAW_PLUCK], "target"),
    (inference_main, "inference.cli.BenchmarkConfig", ["benchmark", "-i", SAW_PLUCK, "-o", "{t}/b"], "config"),
])
def test_the_clis_catch_domain_errors_and_report_a_plain_value_error_as_a_bug(main, target, args, domain, tmp_path,
                                                                              monkeypatch):
    """A ConfigError (or the command's own domain error) is a bad input: one line, exit 2. A plain ValueError
    from the same place is a bug: the one "internal error" line, exit 1, never passed off as the user's fault."""
    from datagen.console import ConfigError
    from inference.clips import TargetError

    def raising(error):
        def f(*a, **k):
            raise error
        return f

    args = [a.format(t=tmp_path) if isinstance(a, str) else a for a in args]
    user = (TargetError if domain == "target" else ConfigError)("a bad value")
    monkeypatch.setattr(target, raising(user))
    one_error(run(main, *args), "a bad value")
    monkeypatch.setattr(target, raising(ValueError("a bug")))
    r = run(main, *args)
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines()[-1].startswith("error: internal error (ValueError: a bug); this is a bug")
