"""The benchmark's targets: WAV clips, `.vital` presets and a data set's rows, each made into a `Clip`.

`list_clips(inputs, ...)` lists the targets (one `PendingClip` each, built one at a time as a run reaches it):
WAV clips (prepared like `infer` prepares them, at the detected note); `.vital` presets rendered at stated MIDI
notes; or the test split of a generated HDF5 data set (each row rendered at its note). A rendered target is
rendered a second time from a fresh Synth: the distance between the two renders is that clip's noise floor
(random phases, noise and unsynchronised LFOs make a preset differ from itself). Every rendered target goes
through a 16-bit WAV file and `inference.audio.prepare` (`wav_target`), as a producer's clip would reach the tool.

Used by `inference.benchmark` (sound matching) and `inference.notes_benchmark` (the note reader).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from inference.audio import Target

log = logging.getLogger(__name__)

NOTES = (48, 60, 72)


class TargetError(ValueError):
    """A benchmark input that cannot be scored: a missing path, a folder with nothing to score, a file of another
    kind, two targets with one name. One line for the user."""


@dataclass(frozen=True)
class Clip:
    name: str  # unique within the run: the file stem (and "@note" for a rendered preset)
    target: Target  # what the network hears and every method is scored against
    note: int  # MIDI note every method renders at
    floor: np.ndarray | None  # (samples,) a second render of the target preset, prepared alike; None for a WAV
    key_held: float | None = None  # seconds the key was held when the target was rendered (None: a WAV)

    @property
    def played(self) -> float:
        """The key-held time every method's preset is scored at: the true one when known, else the detected."""
        return self.key_held if self.key_held is not None else self.target.key_held


@dataclass(frozen=True)
class PendingClip:
    name: str
    build: Callable[[], Clip | None]  # reads or renders the target (None: a preset skipped with a warning)


def wav_target(audio: np.ndarray, *, features, name: str = "clip", prepare=None):
    """audio (samples,) at features.sample_rate -> the Target `prepare` (default `inference.audio.prepare`, what
    `infer` runs) makes of it written as a 16-bit WAV file, as a producer's clip would reach the tool."""
    from inference.export import write_wav

    if prepare is None:
        from inference.audio import prepare
    with tempfile.TemporaryDirectory() as tmp:
        path = write_wav(audio, Path(tmp) / f"{name}.wav", sample_rate=features.sample_rate)
        return prepare(path, features=features)


def as_heard(audio: np.ndarray, *, features, level: float | None = None) -> np.ndarray:
    """(samples,) float32: a method's render made what its target was made, through a 16-bit WAV and
    `inference.audio.prepare` (`wav_target`: leading silence trimmed, DC removed, level, length), so a yardstick
    compares like with like, as it does for the floor. Why: the 16-bit target carries quantisation noise (~-98 dBFS)
    wherever the preset is silent, a float render does not, and mss's log term hears 130 dB down: the target's own
    preset, rendered in float, scored mss 3.13 against Sirenengesang@48 (its floor 0.70), 0.73 once made alike
    (research/benchmarks.md). A render `prepare` refuses (silent, too short once trimmed) is scored as it is.

    level: the target's recording level (`Target.level`); the render is first scaled to it (its RMS measured as the
    target's: trimmed, DC removed, fitted to the model length), so its quantisation noise sits as far under the
    sound as the target's. Without it a render's own output volume set its noise floor: a near-sine target
    (Sirenengesang@48, recorded at RMS 0.01) scored one and the same render mss 0.91 at the target's level and 1.87
    at Vital's louder 0.1, where the yardstick means a gain to cost nothing (research/benchmarks.md)."""
    from datagen.features import prepare
    from inference.audio import AudioError, recording_level

    audio = np.asarray(audio, np.float32)
    if level:  # None (not known) or 0 (the target is silent where the model hears it): scored at its own level
        own = recording_level(prepare(audio, sample_rate=features.sample_rate).audio, features=features)
        if own > 0.0:
            audio = (audio * (level / own)).astype(np.float32)
    quiet = logging.getLogger("inference.audio")  # its remarks (key held, trimmed) are about the target, not this
    saved = quiet.level
    quiet.setLevel(logging.WARNING)  # setLevel, not .level: it clears the logger's cache
    try:
        return wav_target(audio, features=features, name="render").audio
    except AudioError:
        return audio
    finally:
        quiet.setLevel(saved)


def _prepared(audio: np.ndarray, *, features, note: int | None, name: str):
    """`wav_target`, at `note` when the note is known (a rendered preset) instead of the detected one."""
    from inference.pitch import Note, midi_to_hz

    target = wav_target(audio, features=features, name=name)
    if note is not None and note != target.note.midi:
        target = replace(target, note=Note(midi=note, cents=0.0, hz=midi_to_hz(note), pitched=True,
                                           n_notes=1, message=None))
    return target


def _render_twice(preset, *, note: int, features, render,
                  key_held: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two mono renders from fresh Synths, as the preset stands (random phases included), `features.duration`
    long at the sample rate and velocity of `render` (the checkpoint's `datagen.render.RenderConfig`), the key
    held `key_held` s (None: as `render` holds it). Both in one fresh fork of a pristine worker: Vital's random
    generators follow the process's history, so rendered here a clip's target depended on which clips were built
    before it (a resumed run, or another subset, heard other targets)."""
    from datagen.isolation import IsolatedRenderer

    held = key_held if key_held is not None else render.note_length
    config = replace(render, render_length=features.duration, note_length=held, mono=True)
    with IsolatedRenderer(config, fork=True) as renderer:
        first, second = renderer.renders(preset, note=note, n=2)
    return first, second


def _from_preset(preset, *, name: str, note: int, features, render, key_held: float | None = None) -> Clip:
    """preset: a Preset or `.vital` text. The target and its floor go through a 16-bit WAV, as a clip would
    (so the key-held time the searches use is the detected one, as for any clip). render, key_held: as in
    `_render_twice`."""
    key_held = key_held if key_held is not None else render.note_length
    first, second = _render_twice(preset, note=note, features=features, render=render, key_held=key_held)
    return Clip(name=name, target=_prepared(first, features=features, note=note, name=name), note=note,
                floor=_prepared(second, features=features, note=note, name=name).audio, key_held=key_held)


def list_clips(inputs, *, features, render, notes=NOTES, max_clips: int | None = None, seed: int = 0,
               split: str | None = None, key_held: tuple[float, ...] = (1.5,)) -> list[PendingClip]:
    """inputs: paths of WAV files, `.vital` files, folders of either (searched recursively), or `.h5` data sets
    (their test split). features, render: the checkpoint's (`Pipeline.features`, `Pipeline.render`): rendered
    targets are `features.duration` long at the sample rate and velocity of `render`. split: keep only the
    `.vital` files of a folder that its README.md lists in that half of the build / score split
    (`datagen.preset.shared_split`; benchmarks score on "score"). key_held: seconds the key is held in the
    renders of `.vital` targets, one target per value (short notes: plucks, stabs; names get "~0.3s" unless the
    only value is the default 1.5 s).
    max_clips: keep a random subset of this many targets, drawn with `seed`. Nothing is
    read or rendered yet: `PendingClip.build()` does it (a preset that vita refuses or that is silent at a note
    is then skipped with a warning; a bad WAV raises AudioError). Bad inputs raise TargetError, an unusable data
    set DatasetError (one line)."""
    jobs = []  # (name, () -> Clip): targets are listed first and built after subsetting
    for path in map(Path, inputs):
        jobs += _input_jobs(path, features=features, render=render, notes=notes, split=split, key_held=key_held)
    _check_unique([name for name, _ in jobs])
    if max_clips and len(jobs) > max_clips:
        jobs = _subset(jobs, max_clips, seed=seed)
    return [PendingClip(name=name, build=build) for name, build in jobs]


def _input_jobs(path: Path, *, features, render, notes, split: str | None, key_held) -> list:
    """The (name, build) jobs of one input of `list_clips`: a data set's test split, or the `.vital` and audio
    files of a file or folder (a `.vital` file: one job per note x key-held time)."""
    from inference.audio import AUDIO_SUFFIXES

    if not path.exists():
        raise TargetError(f"{path}: no such file or folder")
    if path.suffix in (".h5", ".hdf5"):
        return _dataset_jobs(path, features=features, render=render)
    files = [path] if path.is_file() else sorted(
        f for f in path.rglob("*") if f.suffix.lower() in (".vital", *AUDIO_SUFFIXES))
    if split is not None and path.is_dir():
        files = _in_split(files, split, folder=path)
    if not files:
        raise TargetError(f"{path}: no .vital or audio files")
    jobs = []
    for f in files:
        if f.suffix.lower() == ".vital":
            for note in notes:
                for held in key_held:
                    name = f"{f.stem}@{note}" + ("" if tuple(key_held) == (1.5,) else f"~{held:g}s")
                    jobs.append((name, _preset_job(f, name=name, note=note, features=features, render=render,
                                                   key_held=held)))
        elif f.suffix.lower() in AUDIO_SUFFIXES:
            jobs.append((f.stem, _wav_job(f, features=features)))
        else:
            raise TargetError(f"{f}: not a .vital, audio or .h5 file")
    return jobs


def _in_split(files: list[Path], split: str, *, folder: Path) -> list[Path]:
    """`files` less the `.vital` files that `folder`'s README.md does not list in the `split` half."""
    from datagen.preset import PresetError, shared_split

    try:
        listed = {p.resolve() for p in shared_split(split, folder=folder)}
    except PresetError as e:
        raise TargetError(str(e)) from None
    return [f for f in files if f.suffix.lower() != ".vital" or f.resolve() in listed]


def _check_unique(names: list[str]) -> None:
    for name in names:
        if names.count(name) > 1:
            raise TargetError(f"two targets are both named {name!r}; rename one")


def _subset(jobs: list, n: int, *, seed: int) -> list:
    """A seeded random subset of n jobs, in input order (not the first n files)."""
    keep = set(np.random.default_rng(seed).choice(len(jobs), n, replace=False).tolist())
    return [job for i, job in enumerate(jobs) if i in keep]


def _wav_job(path: Path, *, features):
    def build() -> Clip:
        from inference.audio import prepare

        target = prepare(path, features=features)
        return Clip(name=path.stem, target=target, note=target.note.midi, floor=None)
    return build


def _preset_job(path: Path, *, name: str, note: int, features, render, key_held: float):
    def build() -> Clip | None:
        text = path.read_text(encoding="utf-8", errors="replace")  # the file as Vital reads it: the real sound,
        try:  # custom LFO shapes and sample wavetables included
            return _from_preset(text, name=name, note=note, features=features, render=render, key_held=key_held)
        except Exception as e:  # a preset vita refuses, or a silent render at this note
            log.warning("%s: skipped (%s)", name, str(e).splitlines()[0])
            return None
    return build


def _dataset_jobs(path: Path, *, features, render, split: str = "test") -> list:
    """Rows of a split (the test split: rows no model was trained on), each rendered at its own note, the key
    held as `render` holds it."""
    import h5py

    from datagen.dataset import SPLITS, DatasetError, load_catalog, preset_from_row, read_attrs
    from datagen.registry import load_registry

    attrs = read_attrs(path)
    registry, catalog = load_registry(), load_catalog(attrs)
    with h5py.File(path, "r") as f:
        rows = np.flatnonzero(f["split"][:] == SPLITS.index(split))
        if len(rows) == 0:
            raise DatasetError(f"{path}: no rows in the {split} split")
        labels = {k: f[k][rows] for k in ("continuous", "categorical", "wavetable", "modulation", "midi_note")}

    def job(i: int, row: int):
        def build() -> Clip:
            truth = preset_from_row({k: v[i] for k, v in labels.items()}, registry=registry, catalog=catalog)
            return _from_preset(truth, name=f"{path.stem}#{row}", note=int(labels["midi_note"][i]), features=features,
                                render=render)
        return f"{path.stem}#{row}", build
    return [job(i, row) for i, row in enumerate(rows.tolist())]


