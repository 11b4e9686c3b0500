"""Crash isolation: run Vital in a worker process, so a preset that segfaults costs one request, not the run.

`Worker` keeps one spawned process that builds a handler once (`init(*args)`, e.g. a Synth) and then answers
requests. When the process dies (segfault, abort) or hangs past the timeout, `call` raises `WorkerCrash`
naming what was being done and the signal, and the next call starts a fresh process.

`ThreadWorkers` gives each thread of a thread pool a `Worker` of its own (made on the thread's first call)
and closes them all at the end.

`IsolatedRenderer` is the render engine behind such a worker; `datagen.generate` runs whole sampling +
render + feature jobs behind them.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import threading
from typing import Any, Callable

import numpy as np

from datagen.preset import Preset
from datagen.render import RenderConfig, RenderError

# Fault injection for tests of every layer above this one: a worker whose environment sets this variable
# segfaults (a real SIGSEGV) on any request whose label contains its value.
INJECT_SEGFAULT_ENV = "DATAGEN_INJECT_SEGFAULT"


class WorkerCrash(RuntimeError):
    """The worker process died (or hung) while handling a request."""


RenderCrash = WorkerCrash  # the name callers of the render engine know it by


def _answer(handler, label: str, request: Any, poison: str | None) -> tuple[str, Any]:
    if poison and poison in label:
        ctypes.string_at(0)  # dereference NULL: SIGSEGV
    try:
        return ("ok", handler(request))
    except Exception as e:  # an error is an answer, not a crash
        return ("error", f"{e}")


def _serve(conn, init: Callable[..., Callable[[Any], Any]], args: tuple, fork: bool) -> None:
    handler = init(*args)
    poison = os.environ.get(INJECT_SEGFAULT_ENV)
    prepare = getattr(handler, "prepare", None)  # runs in the worker itself, before the fork (see Worker)
    while True:
        msg = conn.recv()
        if msg is None:
            return
        label, request = msg
        if fork and prepare is not None:
            try:
                request = prepare(request)
            except Exception as e:  # an error is an answer, not a crash
                conn.send(("error", f"{e}"))
                continue
        conn.send(_forked(handler, label, request, poison) if fork else _answer(handler, label, request, poison))


def _forked(handler, label: str, request: Any, poison: str | None) -> tuple[str, Any]:
    """Answer in a forked child of this (pristine) process: every request starts from the same state, and a
    segfault kills only the child. Vital's random generators depend on process history, so this is what
    makes a render a pure function of its request."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: answer, write, exit without running any cleanup of the parent's objects
        os.close(read_fd)
        try:
            data = pickle.dumps(_answer(handler, label, request, poison), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_fd, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) or not data:
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        return ("crash", _describe_exit(code))
    return pickle.loads(data)


class Worker:
    """fork=True answers every request in a fresh fork of the worker as `init` left it (deterministic,
    ~15 ms per fork of a torch-free worker); fork=False reuses the worker's state (faster).

    With fork=True a handler may also have `prepare(request) -> request`, run in the worker itself before each
    fork: work whose result later requests share (the render pool loads a search's base preset there, which
    leaves renders history-free: Vital's randomness advances only while rendering, and renders happen in forks)."""

    def __init__(self, init: Callable[..., Callable[[Any], Any]], *args, timeout: float = 120.0, fork: bool = False):
        self.init, self.args, self.fork = init, args, fork  # init must be importable by name (spawned process)
        self.timeout = timeout  # seconds one request may take before the worker is treated as hung
        self.crashes = 0
        self._ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited Synth or threads
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child, self.init, self.args, self.fork),
                                        daemon=True)
        self._proc.start()
        child.close()
        self._conn = parent

    def call(self, request: Any, *, label: str) -> Any:
        """Send one request. Raises WorkerCrash if the worker dies or hangs, RuntimeError if the handler
        raised (with its message)."""
        if self._proc is None or not self._proc.is_alive():
            self._start()
        status = None
        try:
            self._conn.send((label, request))
            hung = not self._conn.poll(self.timeout)
            if not hung:
                status, payload = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            hung = False
        if status is None:
            self._proc.join(timeout=0 if hung else 5)
            why = f"hung for more than {self.timeout:g} s" if hung else _describe_exit(self._proc.exitcode)
            self._reset()
            self.crashes += 1
            raise WorkerCrash(f"{label} crashed the Vital renderer ({why}); the worker was restarted")
        if status == "crash":  # a forked child died; the worker itself is fine
            self.crashes += 1
            raise WorkerCrash(f"{label} crashed the Vital renderer ({payload})")
        if status == "error":
            raise _HandlerError(payload)
        return payload

    @property
    def pid(self) -> int | None:
        """The worker process's pid, None before the first call; a new pid means a new (restarted) worker."""
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

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

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ThreadWorkers:
    """One `Worker(init, *args, timeout=timeout, fork=fork)` per calling thread, started on that thread's first
    call and reused by its later calls: the workers of a thread pool whose threads each drive their own process.
    `close()` (or leaving the `with` block) closes every worker made so far; it may be called more than once."""

    def __init__(self, init: Callable[..., Callable[[Any], Any]], *args, timeout: float = 120.0, fork: bool = False):
        self.init, self.args, self.timeout, self.fork = init, args, timeout, fork
        self._local = threading.local()
        self._lock = threading.Lock()
        self._made: list[Worker] = []

    def worker(self) -> Worker:
        """The calling thread's worker (made now if this thread has none yet)."""
        worker = getattr(self._local, "worker", None)
        if worker is None:
            worker = self._local.worker = Worker(self.init, *self.args, timeout=self.timeout, fork=self.fork)
            with self._lock:
                self._made.append(worker)
        return worker

    def call(self, request: Any, *, label: str) -> Any:
        """`Worker.call` on the calling thread's worker (same errors)."""
        return self.worker().call(request, label=label)

    @property
    def workers(self) -> list[Worker]:
        """Every worker made so far, in the order the threads first called."""
        with self._lock:
            return list(self._made)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _HandlerError(RuntimeError):
    pass


def _render_handler(config: RenderConfig) -> Callable[[tuple[str, int, int | None]], np.ndarray]:
    from datagen.render import Renderer

    renderer = Renderer(config)

    def handle(request: tuple[str, int, int | None]) -> np.ndarray:
        text, note, takes = request  # takes: None for one render, else that many from fresh Synths, stacked
        if takes is None:
            return renderer.render(text, note=note)
        return np.stack([Renderer(config).render(text, note=note) for _ in range(takes)])

    return handle


class IsolatedRenderer(Worker):
    """`Renderer.render` in a worker process: RenderCrash if Vital dies, RenderError if it refuses. fork=True
    renders each request in a fresh fork of the pristine worker (`Worker`), so a render is a pure function of
    (preset, note), whatever was rendered before it."""

    def __init__(self, config: RenderConfig = RenderConfig(), *, timeout: float = 120.0, fork: bool = False):
        super().__init__(_render_handler, config, timeout=timeout, fork=fork)
        self.config = config

    def render(self, preset: Preset | str, *, note: int = 60, name: str | None = None) -> np.ndarray:
        return self._call(preset, note=note, name=name, takes=None)

    def renders(self, preset: Preset | str, *, note: int = 60, n: int = 2, name: str | None = None) -> np.ndarray:
        """(n, ...) `n` renders of the preset in turn, each from a fresh Synth of one process: the random parts
        of a preset (random phases, noise) differ between them, as between two recordings of it. With fork=True
        the k-th render is a pure function of (preset, note, k) (the benchmark's targets and their floors)."""
        return self._call(preset, note=note, name=name, takes=int(n))

    def _call(self, preset: Preset | str, *, note: int, name: str | None, takes: int | None) -> np.ndarray:
        text = preset if isinstance(preset, str) else preset.to_vital_text()
        label = f"preset {name or (preset.name if isinstance(preset, Preset) else '') or '<unnamed>'!r}"
        try:
            return self.call((text, int(note), takes), label=label)
        except _HandlerError as e:
            raise RenderError(f"{label}: {e}") from None


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
