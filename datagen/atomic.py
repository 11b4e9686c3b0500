"""Atomic file writes: a file appears under its final name only when it is complete.

    with atomic_path(path) as tmp:      # tmp: a hidden sibling ".<stem>.<pid>.partial<suffix>"
        sf.write(tmp, audio, sr)        # any writer that takes a path (the suffix is kept for format sniffing)

On success the temp file is fsynced and renamed over `path` (`os.replace`, atomic within one filesystem); on any
exception, KeyboardInterrupt included, it is removed. A SIGKILL runs no cleanup: the temp file it may leave is
hidden and never under a final name, and `remove_stale(folder)` (called at the start of the next run that writes
there) deletes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

_PARTIAL = re.compile(r"^\..+\.(\d+)\.partial(\.[^.]*)?$")  # ".<stem>.<pid>.partial<suffix>"


def partial_path(path: Path) -> Path:
    """The temp file `atomic_path` writes before renaming it to `path`."""
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it to `path` when the block succeeds, delete it otherwise."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # fsync: after a power cut the final name holds the whole file or the old one
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def remove_stale(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files of `atomic_path` left in `folder` by processes that no longer run (a SIGKILL)."""
    removed = []
    with contextlib.suppress(OSError):
        for entry in Path(folder).iterdir():
            m = _PARTIAL.match(entry.name)
            if m and entry.is_file() and not _alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, another user's
        return True
    return True
