"""The repository's promises: CI runs the README's test command verbatim, the layout exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)


def test_quick_start_is_two_commands_and_ci_runs_the_test_command():
    main_job, tests = _readme_commands()[:2]
    assert main_job.startswith("pip install") and "python -m " in main_job
    assert tests.startswith("pip install") and "pytest" in tests
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci_lines, "the README test command must appear verbatim in .ci/run"
    assert ci_lines[-1] == tests


def test_layout():
    for path in ("datagen", "training", "inference", "research", "data", "checkpoints", "tests",
                 "pyproject.toml", "README.md", "CLAUDE.md", ".ci/run", "examples/presets/saw_pluck.vital"):
        assert (ROOT / path).exists(), path


def test_no_torchaudio_and_torch_not_capped_below_2_14():
    text = (ROOT / "pyproject.toml").read_text()
    assert "torchaudio" not in text
    assert re.search(r'"torch>=2\.(1[4-9]|[2-9]\d)', text)


def test_the_wheel_ships_the_default_model_and_bank_and_finds_them_from_anywhere(tmp_path):
    """`pip install .` (not editable) must find the default model from any folder: the wheel holds
    inference/assets/model.pt and bank.npz, and default_checkpoint() resolves inside the installed package."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(tmp_path / "wheel")], check=True, capture_output=True, cwd=tmp_path)
    wheel = next((tmp_path / "wheel").glob("vital_match-*.whl"))
    sizes = {i.filename: i.file_size for i in zipfile.ZipFile(wheel).infolist()}
    assert 1e6 < sizes["inference/assets/model.pt"] < 50e6 and sizes["inference/assets/bank.npz"] < 20e6
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    found = subprocess.run([sys.executable, "-c", "from inference.predict import default_checkpoint as d; "
                            "print(d(), d().is_file())"], capture_output=True, text=True, cwd=tmp_path,
                           env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}, check=True)
    assert found.stdout.split() == [str(tmp_path / "site" / "inference" / "assets" / "model.pt"), "True"]
