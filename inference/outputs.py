"""Where `infer` writes, decided and checked before any slow work, so no input is ever lost.

The rules (CLAUDE.md states them too):
- no output path may be an input file (the same file after resolving links, `os.path.samefile`), for every
  output option, single and batch;
- two inputs never map to the same output: clashing stems ("x.wav", "x.flac") keep their suffix ("x_wav",
  "x_flac"); inputs still clashing after that (the same name in two folders) are refused up front;
- every output has a suffix we can write (`SUFFIXES`), and its folder exists (single input) or can be made.
Each violation is a `CliError`: one line, exit 2. Writing itself is atomic (`datagen.atomic`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from datagen.console import CliError, check_folder, check_writable

log = logging.getLogger(__name__)

# option -> (suffixes it may write, the suffix a batch run gives each file)
SUFFIXES = {"--output": (".vital",), "--render": (".wav", ".flac"), "--plot": (".png",), "--tutorial": (".md", ".txt")}


@dataclass(frozen=True)
class Outputs:
    """The files one input writes (None: that output was not asked for)."""

    source: Path  # the input clip
    stem: str  # the name its outputs share (the preset is called "<stem> (vital-match)")
    vital: Path
    wav: Path | None
    png: Path | None
    md: Path | None

    def paths(self) -> dict[str, Path]:
        return {opt: p for opt, p in zip(SUFFIXES, (self.vital, self.wav, self.png, self.md)) if p is not None}


def plan(files: list[Path], *, output: Path, render: Path | None = None, plot: Path | None = None,
         tutorial: Path | None = None, many: bool) -> list[Outputs]:
    """One `Outputs` per distinct input file, every rule above checked (CliError otherwise). Creates nothing."""
    options = {"--output": output, "--render": render, "--plot": plot, "--tutorial": tutorial}
    files = _distinct(files)
    if many:
        for opt, folder in options.items():
            if folder is not None:
                check_folder(folder, option=opt)
        stems = _stems(files)
        plans = [Outputs(source=f, stem=s, **{_field(opt): None if folder is None else folder / f"{s}{SUFFIXES[opt][0]}"
                                              for opt, folder in options.items()})
                 for f, s in zip(files, stems)]
    else:
        for opt, path in options.items():
            if path is not None:
                check_writable(path, suffixes=SUFFIXES[opt], option=opt)
        plans = [Outputs(source=f, stem=f.stem, **{_field(opt): p for opt, p in options.items()}) for f in files]
    _check_no_input_overwritten(plans, files)
    _check_no_shared_output(plans)
    return plans


def make_folders(plans: list[Outputs]) -> None:
    """Create the folders the outputs go to (after `plan` checked them). OSError -> CliError."""
    for folder in sorted({p.parent for o in plans for p in o.paths().values()}):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CliError(f"{folder}: cannot make this output folder ({e.strerror or e})") from None


def _field(option: str) -> str:
    return {"--output": "vital", "--render": "wav", "--plot": "png", "--tutorial": "md"}[option]


def _distinct(files: list[Path]) -> list[Path]:
    """The inputs with repeats of one file (given twice, or through a link) dropped, order kept."""
    out: list[Path] = []
    for f in files:
        if any(_same(f, g) for g in out):
            log.info("%s: given more than once; processed once", f)
            continue
        out.append(f)
    return out


def _stems(files: list[Path]) -> list[str]:
    """Output names for a batch: the stem, or "<stem>_<ext>" where stems clash (case-blind, as macOS is)."""
    def key(s: str) -> str:
        return s.casefold()

    counts: dict[str, int] = {}
    for f in files:
        counts[key(f.stem)] = counts.get(key(f.stem), 0) + 1
    stems = [f.stem if counts[key(f.stem)] == 1 else f"{f.stem}_{f.suffix.lstrip('.').lower()}" for f in files]
    seen: dict[str, Path] = {}
    for f, s in zip(files, stems):
        if key(s) in seen:
            raise CliError(f"{seen[key(s)]} and {f} would write the same outputs ({s}.*); rename one or run them "
                           "separately")
        seen[key(s)] = f
    return stems


def _check_no_input_overwritten(plans: list[Outputs], files: list[Path]) -> None:
    for o in plans:
        for opt, path in o.paths().items():
            for f in files:
                if _same(path, f):
                    raise CliError(f"{opt} {path} is the input {f}: refusing to overwrite an input")


def _check_no_shared_output(plans: list[Outputs]) -> None:
    seen: dict[Path, str] = {}
    for o in plans:
        for opt, path in o.paths().items():
            key = Path(os.path.abspath(path))
            if key in seen:
                raise CliError(f"{opt} {path}: also written as {seen[key]}; give each output its own path")
            seen[key] = f"{opt} for {o.source}"


def _same(a: Path, b: Path) -> bool:
    """The same file (after links) when both exist; else the same absolute path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
