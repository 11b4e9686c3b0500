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
