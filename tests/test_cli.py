"""Every command through Click's CliRunner, and every bad input issue #2 names: one line, exit code 2."""

import json
import subprocess
import sys

import pytest
import soundfile as sf
from click.testing import CliRunner

from datagen.cli import main
from datagen.isolation import INJECT_SEGFAULT_ENV
from datagen.preset import write_vital
from tests.conftest import write_json


@pytest.fixture
def run():
    def invoke(*args, env=None):
        return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
    return invoke


@pytest.fixture
def init_file(init, registry, tmp_path):
    return write_vital(init, tmp_path / "init.vital", registry=registry)


def _one_line_error(result, match):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and match in lines[0], result.output
    assert "Traceback" not in result.output


def test_registry_text_and_json(run):
    r = run("registry")
    assert r.exit_code == 0 and "params: 452" in r.output and "osc_1_on" in r.output
    d = json.loads(run("registry", "--json").output)
    assert d["summary"]["continuous"] == 293 and len(d["destinations"]) == 428


def test_render_writes_wav(run, init_file, tmp_path):
    out = tmp_path / "o.wav"
    r = run("render", init_file, "-o", out, "--note", 48, "--length", 1.0, "--note-length", 0.5)
    assert r.exit_code == 0, r.output
    audio, sr = sf.read(out)
    assert sr == 44100 and audio.shape == (44100,) and abs(audio).max() > 0.05
    r = run("render", init_file, "-o", out, "--stereo", "--length", 0.5)
    assert sf.read(out)[0].shape == (22050, 2)


def test_render_not_json(run, tmp_path):
    bad = tmp_path / "bad.vital"
    bad.write_text("this is not json")
    _one_line_error(run("render", bad, "-o", tmp_path / "o.wav"), "not a Vital preset (invalid JSON")


def test_render_json_not_a_preset(run, tmp_path):
    bad = write_json(tmp_path / "list.vital", {"hello": "world"})
    _one_line_error(run("render", bad, "-o", tmp_path / "o.wav"), "JSON is not a Vital preset")


def test_render_missing_file_and_bad_output(run, init_file, tmp_path):
    _one_line_error(run("render", tmp_path / "nope.vital", "-o", tmp_path / "o.wav"), "no such file")
    _one_line_error(run("render", init_file, "-o", tmp_path / "no" / "dir" / "o.wav"), "does not exist")
    _one_line_error(run("render", init_file, "-o", tmp_path), "is a directory")


def test_render_bad_note_is_usage_error(run, init_file, tmp_path):
    r = run("render", init_file, "-o", tmp_path / "o.wav", "--note", 200)
    assert r.exit_code == 2 and "200 is not in the range 0<=x<=127" in r.output


def test_unknown_parameters_warn_and_render(run, init, registry, tmp_path):
    doc = init.to_vital(registry)
    doc["settings"] = {**doc["settings"], "mystery_knob": 0.5}
    path = write_json(tmp_path / "u.vital", doc)
    r = CliRunner().invoke(main, ["render", path, "-o", str(tmp_path / "o.wav")])
    assert r.exit_code == 0
    assert "WARNING" in r.output and "ignored 1 unknown parameter(s): mystery_knob" in r.output


def test_out_of_range_values_clamped_with_warning_and_render(run, init, registry, tmp_path):
    doc = init.to_vital(registry)
    doc["settings"] = {**doc["settings"], "chorus_on": 1.0, "chorus_voices": 100.0}  # would segfault unclamped
    path = write_json(tmp_path / "c.vital", doc)
    r = run("render", path, "-o", tmp_path / "o.wav", "--length", 0.5)
    assert r.exit_code == 0, r.output
    assert "clamped 1 out-of-range value(s): chorus_voices=100 -> [1, 4]" in r.output


def test_render_segfault_reported_and_process_survives(run, init_file, tmp_path):
    r = run("render", init_file, "-o", tmp_path / "o.wav", env={INJECT_SEGFAULT_ENV: "init.vital"})
    _one_line_error(r, "preset 'init.vital' crashed the Vital renderer (killed by SIGSEGV)")
    assert run("registry").exit_code == 0  # this very process is alive and well


def test_bench_render_prints_ratio(run, init_file, tmp_path):
    r = run("bench-render", "--presets", tmp_path, "-n", 1, "--rounds", 1)
    assert r.exit_code == 0, r.output
    assert "1 presets from" in r.output and "ratio    :" in r.output


@pytest.mark.parametrize("package", ["datagen", "training", "inference"])
def test_help_is_instant_and_light(package):
    code = (f"import sys; from click.testing import CliRunner; from {package}.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('torch', 'vita', 'gradio', 'librosa', 'cma', 'h5py') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    proc = subprocess.run([sys.executable, "-m", package, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "Usage:" in proc.stdout
