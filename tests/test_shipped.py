"""What the repository ships: the default checkpoint, the example clips, and the README's main job on them."""

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from datagen.preset import read_vital
from datagen.render import RenderConfig, Renderer
from inference.audio import prepare
from inference.cli import main
from inference.predict import Pipeline, default_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.wav"))
NOTES = {"c2": 36, "c3": 48, "c4": 60}  # the sounding note each clip's file name states


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline.from_checkpoint()  # no path: the shipped default


def test_the_default_checkpoint_is_small_half_precision_and_loads(pipeline):
    import torch

    assert default_checkpoint().stat().st_size < 50e6
    ckpt = torch.load(default_checkpoint(), map_location="cpu", weights_only=True)
    assert {t.dtype for t in ckpt["model"].values() if t.is_floating_point()} == {torch.float16}
    assert "optimizer" not in ckpt and "baseline" in ckpt
    assert pipeline.tier == 0 and pipeline.draw_tier == 3  # perturbed real presets; searches draw from tier 3
    assert pipeline.render == RenderConfig()  # trained on renders at 44100 Hz, velocity 0.8, key held 1.5 s of 2 s
    assert len(pipeline.importance) == len(pipeline.registry.continuous)
    assert pipeline.pos_weight == 100.0 and ckpt["loss_config"]["continuous_error"] == "l1"
    assert pipeline.model.hears_note  # it is told the note a clip is played at (research/model_card.md)


def test_four_to_six_example_clips_of_one_note_each(pipeline):
    assert 4 <= len(EXAMPLES) <= 6
    for path in EXAMPLES:
        info = sf.info(path)
        assert (info.samplerate, info.channels, round(info.duration, 3)) == (44100, 1, 2.0), path
        stated = NOTES[re.search(r"_(c\d)$", path.stem).group(1)]
        assert prepare(path, features=pipeline.features).note.midi == stated, path


def test_the_readme_main_job_on_an_example(tmp_path):
    """The README's main job (`infer --refine` on an example) with a small budget: a .vital that vita loads."""
    readme = (ROOT / "README.md").read_text()
    main_job = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)[0]
    args = main_job.split("python -m inference ", 1)[1].split()
    clip = Path(args[args.index("-i") + 1])
    assert (ROOT / clip).is_file() and "--refine" in args
    out = tmp_path / "clip.vital"
    result = CliRunner().invoke(main, ["infer", "-i", str(ROOT / clip), "-o", str(out), "--refine",
                                       "--refine-evals", "24", "--threads", "2"])
    assert result.exit_code == 0, result.output
    audio = Renderer().render(read_vital(out), note=NOTES[re.search(r"_(c\d)\.wav$", clip.name).group(1)])
    assert np.sqrt(np.mean(audio**2)) > 1e-3  # the preset makes a sound
