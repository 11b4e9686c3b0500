"""What the three CLIs share: one-line errors with exit code 2, and one-line log messages.

A producer or a batch script should see `error: <what is wrong>` and exit code 2 for every bad input, never a
traceback; warnings (clamped values, ignored controls) are single lines on stderr.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click


class CliError(click.ClickException):
    """A bad input or an impossible request: printed as one line, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        force=True,
    )
    for noisy in ("numba", "matplotlib", "urllib3", "httpx", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def check_writable(path: Path) -> None:
    """Fail early, with one line, when an output file could not be written."""
    if path.is_dir():
        raise CliError(f"{path}: is a directory, expected a file path")
    parent = path.parent
    if not parent.is_dir():
        raise CliError(f"{path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise CliError(f"{path}: folder {parent} is not writable")
