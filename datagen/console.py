"""What the three CLIs share: one-line errors with exit code 2, and one-line log messages.

A producer or a batch script should see `error: <what is wrong>` and exit code 2 for every bad input, never a
traceback; warnings (clamped values, ignored controls) are single lines on stderr.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import click

log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2  # every bad input or impossible request
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
EXIT_BUG = 1  # an exception nobody anticipated: a bug, reported in one line (-v shows the traceback)


class CliError(click.ClickException):
    """A bad input or an impossible request: printed as one line, exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class ConfigError(ValueError):
    """A value the user chose that is out of range or inconsistent: raised by the config dataclasses'
    `__post_init__` (and by functions checking their options), caught by the CLIs as one `error:` line. A plain
    ValueError is not caught there: it is a bug, and `Group` reports it as one."""


class Interrupted(CliError):
    """Ctrl-C: one line saying what was kept, exit code 130."""

    exit_code = EXIT_INTERRUPTED


class Group(click.Group):
    """The root group of each CLI: whatever goes wrong ends in one `error: ...` line, never a traceback.

    Usage errors (a missing option, a bad value) -> exit 2 with a pointer to --help instead of click's three-line
    usage block; CliError -> its own exit code; Ctrl-C -> exit 130; any other exception is a bug -> exit 1, one
    line naming it (with -v the traceback follows). The guarantee holds for cases nobody listed.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:  # BadParameter, MissingParameter, NoSuchOption, ...
            where = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
            _fail(f"{e.format_message().rstrip('.')}{where}", e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:  # click turns KeyboardInterrupt into Abort
            _fail("interrupted", EXIT_INTERRUPTED)
        except Exception as e:  # noqa: BLE001: the last line of defence; a bug still exits non-zero
            if log.isEnabledFor(logging.DEBUG):
                traceback.print_exc()
            reason = (str(e).splitlines() or [""])[0][:300]
            _fail(f"internal error ({type(e).__name__}{': ' + reason if reason else ''}); this is a bug, please "
                  "report it (-v shows the traceback)", EXIT_BUG)
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
        force=True,
    )
    for noisy in ("numba", "matplotlib", "urllib3", "httpx", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def check_writable(path: Path, *, suffixes: tuple[str, ...] = (), option: str = "") -> None:
    """Fail early, with one line, when an output file could not be written (or has a suffix we cannot write)."""
    name = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise CliError(f"{name}: is a directory, expected a file path")
    if suffixes and path.suffix.lower() not in suffixes:
        raise CliError(f"{name}: unsupported file type {path.suffix or '(none)'!r}; use {' or '.join(suffixes)}")
    _check_parent(path.parent, name)


def check_folder(path: Path, *, option: str = "") -> None:
    """Fail early when `path` cannot be (made into) a writable output folder; it is created later, by the work."""
    name = f"{option} {path}" if option else str(path)
    if path.exists() and not path.is_dir():
        raise CliError(f"{name}: is a file, expected a folder")
    if path.is_dir():
        if not os.access(path, os.W_OK):
            raise CliError(f"{name}: folder is not writable")
        return
    _check_parent(path.parent, name)


def _check_parent(parent: Path, name: str) -> None:
    """The nearest existing ancestor must be a writable folder (missing folders in between are made later)."""
    missing = parent
    while not missing.exists() and missing != missing.parent:
        missing = missing.parent
    if not missing.is_dir():
        raise CliError(f"{name}: {missing} is a file, not a folder")
    if missing != parent:
        raise CliError(f"{name}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise CliError(f"{name}: folder {parent} is not writable")
