"""Crash isolation: render in a worker process, so a preset that segfaults Vital costs one render, not the run.

`IsolatedRenderer.render` behaves like `Renderer.render`, except that when the worker dies (segfault, abort,
hang past the timeout) it raises `RenderCrash` naming the preset and the signal, and the next call starts a
fresh worker. The parent process never loads a risky preset into its own Synth.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal

import numpy as np

from datagen.preset import Preset
from datagen.render import RenderConfig, RenderError


# Fault injection for tests of every layer above this one: a worker whose environment sets this variable
# segfaults (a real SIGSEGV) on any preset whose JSON contains its value.
INJECT_SEGFAULT_ENV = "DATAGEN_INJECT_SEGFAULT"


class RenderCrash(RuntimeError):
    """The render worker died while rendering a preset."""


def _serve(conn, config: RenderConfig) -> None:
    from datagen.render import Renderer

    renderer = Renderer(config)
    poison = os.environ.get(INJECT_SEGFAULT_ENV)
    while True:
        msg = conn.recv()
        if msg is None:
            return
        text, note = msg
        if poison and poison in text:
            ctypes.string_at(0)  # dereference NULL: SIGSEGV
        try:
            conn.send(("ok", renderer.render(text, note=note)))
        except Exception as e:  # a refused preset is an answer, not a crash
            conn.send(("error", f"{e}"))


class IsolatedRenderer:
    def __init__(self, config: RenderConfig = RenderConfig(), *, timeout: float = 120.0):
        self.config = config
        self.timeout = timeout  # seconds one render may take before the worker is treated as hung
        self.crashes = 0
        self._ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited Synth or threads
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child, self.config), daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def render(self, preset: Preset | str, *, note: int = 60, name: str | None = None) -> np.ndarray:
        """Render in the worker. Raises RenderCrash if the worker dies, RenderError if Vital refuses."""
        text = preset if isinstance(preset, str) else preset.to_vital_text()
        label = name or (preset.name if isinstance(preset, Preset) else "") or "<unnamed>"
        if self._proc is None or not self._proc.is_alive():
            self._start()
        try:
            self._conn.send((text, int(note)))
            hung = not self._conn.poll(self.timeout)
            if not hung:
                status, payload = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            hung = False
            status = None
        if hung or status is None:
            self._proc.join(timeout=0 if hung else 5)
            why = f"hung for more than {self.timeout:g} s" if hung else _describe_exit(self._proc.exitcode)
            self._reset()
            self.crashes += 1
            raise RenderCrash(f"preset {label!r} crashed the Vital renderer ({why}); the worker was restarted")
        if status == "error":
            raise RenderError(f"preset {label!r}: {payload}")
        return payload

    def _reset(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5)
        self._proc = self._conn = None

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(timeout=5)
            except (BrokenPipeError, OSError):
                pass
        self._reset()

    def __enter__(self) -> "IsolatedRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
