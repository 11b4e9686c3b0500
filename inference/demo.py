"""The demo: a Gradio page where a producer uploads or records one note and gets a Vital preset.

`build_app(pipeline)` returns the `gr.Blocks`; `launch(checkpoint, host, port, share)` is what
`python -m inference demo` runs. Every upload goes through `run()`, which calls the same library functions as
the `infer` command (`match.match`, `export.export / render / plot`, `describe.describe`, `tutorial.tutorial`):
there is no second implementation of the main job. The preset is described once per upload; the cards, the
route table and the tutorial all read that one `describe.PresetView`.

Reliability:
- Bad uploads (not audio, too short, silent, too long, too large) end in a readable message in the page
  (`inference.audio.AudioError`, or `check_upload`'s own size / duration limits); any other exception is
  logged with its traceback and shown as one line. The app keeps serving either way.
- Uploads are capped twice: gradio's `max_file_size` (the server refuses the upload) and `check_upload`.
- One job at a time (`queue(default_concurrency_limit=1)`): other users wait in the queue, they are not refused
  until `MAX_QUEUE` are waiting.
- Files: one `Workspace` (a `tempfile.TemporaryDirectory`) per app holds gradio's upload and cache folders
  (`GRADIO_TEMP_DIR`) and one subfolder per request; a later request deletes the subfolders of requests that
  ended a minute ago or more (gradio copied their outputs into its cache when they returned), gradio's cache
  drops files older than an hour, and the whole folder goes at exit (also on SIGTERM). `allowed_paths` is
  that folder alone, so no path outside it is ever served.

Gradio is imported inside functions: `python -m inference --help` must not import it.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference.describe import PresetView

log = logging.getLogger(__name__)

MAX_UPLOAD_MB = 20  # MB (10^6 bytes): the largest upload accepted
MAX_SECONDS = 30.0  # seconds: the longest clip accepted (the model hears the first couple of seconds)
MAX_EVALS = 2000
REFINE_TIMEOUT = 180.0  # seconds: refinement stops after this, so one user cannot hold the queue for long
MAX_QUEUE = 32  # jobs waiting; more are refused with gradio's "queue is full"
CACHE_SECONDS = 3600  # gradio's cache (uploads, served outputs) drops files older than this, checked every 10 min

INTRO = """# vital-match
Upload or record **one synth note** (1–4 s works best). The network predicts every Vital setting; *refine*
then listens: it renders candidates with Vital (network samples, nearby presets from a bank, random draws) and
searches the whole preset towards your clip.
Download the `.vital` file and open it in [Vital](https://vital.audio)."""

_SECTIONS = (("oscillators", "Oscillators"), ("filters", "Filters"), ("envelopes", "Envelopes"), ("lfos", "LFOs"),
             ("random", "Random LFOs"), ("effects", "Effects"))


class Workspace:
    """The app's one temporary folder. `root` holds gradio's folder (`gradio/`) and `req-*` per request.

    A request's folder is deleted by a later request once it has been finished for `keep_seconds` (gradio
    copies a job's outputs into its cache as soon as the job returns), and everything goes at exit."""

    def __init__(self, parent: str | Path | None = None, *, keep_seconds: float = 60.0):
        self._tmp = tempfile.TemporaryDirectory(prefix="vital-match-demo-", dir=parent)
        self.root = Path(self._tmp.name).resolve()
        self.gradio = self.root / "gradio"
        self.gradio.mkdir()
        self.keep_seconds = keep_seconds
        self._lock = threading.Lock()
        self._finished: dict[Path, float] = {}  # folder -> time.monotonic() when its request ended
        atexit.register(self.cleanup)

    @contextmanager
    def request(self):
        """A fresh folder for one request (sweeping old ones first); marked finished when the block exits."""
        with self._lock:
            now = time.monotonic()
            for old, ended in list(self._finished.items()):
                if now - ended >= self.keep_seconds:
                    shutil.rmtree(old, ignore_errors=True)
                    del self._finished[old]
            folder = Path(tempfile.mkdtemp(prefix="req-", dir=self.root))
        try:
            yield folder
        finally:
            with self._lock:
                self._finished[folder] = time.monotonic()

    def cleanup(self) -> None:
        self._tmp.cleanup()


# ---- the job: one upload -> everything the page shows ------------------------------------------------------


def check_upload(path: str | Path, *, max_bytes: int, max_seconds: float) -> None:
    """Refuse an upload that is too large or too long, before reading it. Raises AudioError (one line).
    Anything else wrong with it (not audio, silent, too short) is for `audio.prepare` to say."""
    import soundfile as sf

    from inference.audio import AudioError

    p = Path(path)
    size = p.stat().st_size if p.is_file() else 0
    if size > max_bytes:
        raise AudioError(f"{p.name}: file is {size / 1e6:.1f} MB, the limit is {max_bytes / 1e6:g} MB")
    try:
        seconds = sf.info(str(p)).duration
    except Exception:  # not audio: prepare() says so in its own words
        return
    if seconds > max_seconds:
        raise AudioError(f"{p.name}: clip is {seconds:.1f} s long, the limit is {max_seconds:g} s "
                         f"(one note of 1-4 s works best)")


def run(path: str | Path | None, *, pipeline, workspace: Workspace, refine: bool = False, evals: int | None = None,
        search: str | None = None, max_bytes: int = MAX_UPLOAD_MB * 10**6, max_seconds: float = MAX_SECONDS,
        progress=None, threads: int | None = None) -> dict:
    """Everything the page shows for one upload. Never raises: a bad clip gives {"ok": False, "status": ...}.

    Returns {"ok", "status", "note", "routes", "tutorial" (Markdown), "preset" (HTML), "spectrogram" (PNG
    path), "target", "prediction", "refined" (WAV paths; refined None without refinement), "vital" (path),
    "seconds"}. progress(fraction, desc) is called as the job advances (gradio's `gr.Progress`). evals: the
    refinement's renders (None: `RefineConfig.evals`, the default everywhere).
    """
    from inference.audio import AudioError

    empty = {"ok": False, "note": "", "preset": "", "routes": "", "tutorial": "", "spectrogram": None, "target": None,
             "prediction": None, "refined": None, "vital": None, "seconds": 0.0}
    if path is None:
        return {**empty, "status": _error_md("Upload or record a clip first.")}
    name = Path(path).name
    try:
        with workspace.request() as folder:
            return _run(Path(path), pipeline=pipeline, folder=folder, refine=refine, evals=evals, search=search,
                        max_bytes=max_bytes, max_seconds=max_seconds, progress=progress or _no_progress,
                        threads=threads)
    except AudioError as e:
        message = str(e).replace(str(path), name)  # the user's file name, not the server's temp path
        log.info("demo: refused %s: %s", name, message)
        return {**empty, "status": _error_md(message)}
    except Exception as e:  # last resort: log the traceback, keep the app alive
        log.exception("demo: failed on %s", name)
        return {**empty, "status": _error_md(f"Something went wrong ({type(e).__name__}). It was logged on the "
                                             "server; the app still works, try another clip.")}


def _no_progress(fraction, desc=None):
    pass


def _run(path: Path, *, pipeline, folder: Path, refine: bool, evals: int | None, search: str | None, max_bytes: int,
         max_seconds: float, progress, threads: int | None) -> dict:
    from inference import export
    from inference.match import match
    from inference.proposals import load_bank
    from inference.refine import RefineConfig
    from inference.describe import describe
    from inference.tutorial import tutorial

    t0 = time.perf_counter()
    check_upload(path, max_bytes=max_bytes, max_seconds=max_seconds)
    stem = _safe_stem(path.stem)
    progress(0.0, desc="Reading the clip and predicting")
    config = RefineConfig(evals=int(evals or RefineConfig.evals), timeout=REFINE_TIMEOUT, threads=threads,
                          search=search or RefineConfig.search) if refine else None

    def on_progress(done, total, best):
        progress(0.1 + 0.7 * done / max(total, 1), desc=f"Refining: {done}/{total} renders, distance {best:.3f}")

    result = match(path, pipeline, refine=config, bank=load_bank() if refine else None, show_progress=False,
                   on_progress=on_progress)
    note, r = result.note, result.refinement
    note_text = export.note_name(note.midi)
    progress(0.8, desc="Rendering and writing the preset")
    sr = pipeline.features.sample_rate
    vital = export.export_match(result, folder / f"{stem}.vital", stem=stem, pipeline=pipeline,
                                by="the vital-match demo")
    audio = export.match_audio(result, pipeline=pipeline)
    wavs = {k: export.write_wav(a, folder / f"{stem}-{k}.wav", sample_rate=sr) for k, a in audio.items()}
    png = export.plot(audio, folder / f"{stem}-spectrograms.png", features=pipeline.features,
                      title=f"{path.name} at {note_text}")

    progress(0.9, desc="Describing the preset")
    confidence = {**result.prediction.confidence,
                  **{f"osc_{i}_wavetable": c for i, c in enumerate(result.prediction.wavetable_confidence, start=1)}}
    described = describe(result.preset, registry=pipeline.registry, confidence=confidence)
    # The cards also show the wavetable choices' confidence; the tutorial carries the parameters' only, as
    # `infer --tutorial` does, so both commands write the same tutorial for the same preset.
    tut = tutorial(described.with_confidence(result.prediction.confidence), note=note_text)
    elapsed = time.perf_counter() - t0
    done = f"Done in {elapsed:.1f} s: `{vital.name}` is ready to download."
    if r is not None:
        done += (f" Refinement: spectral distance {r.initial_loss:.3f} → {r.final_loss:.3f} in {r.evaluations} "
                 f"renders ({r.seconds:.1f} s).")
    return {
        "ok": True, "status": done, "note": _note_md(result, note_text),
        "preset": _preset_html(described), "routes": _routes_md(described, result.prediction.modulation_confidence),
        "tutorial": f"*{_escape(tut.notice)}*\n\n{tut.text}", "spectrogram": str(png),
        "target": str(wavs["target"]), "prediction": str(wavs["prediction"]),
        "refined": str(wavs["refined"]) if "refined" in wavs else None, "vital": str(vital), "seconds": elapsed,
    }


# ---- Markdown --------------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Plain text safe inside Markdown (file names and messages can hold *, _, |, <, ...)."""
    return re.sub(r"([\\`*_{}\[\]<>#+|!~])", r"\\\1", str(text))  # brackets escaped: () can't make a link


def _error_md(message: str) -> str:
    return f"### ⚠️ Could not use this clip\n\n{_escape(message)}"


def _safe_stem(stem: str) -> str:
    """A file name stem that is safe in a download: letters, digits, -_. and spaces; never empty."""
    clean = re.sub(r"[^A-Za-z0-9 ._-]+", "_", stem).strip(" .")[:60]
    return clean or "clip"


def _note_md(result, note_text: str) -> str:
    note = result.note
    if note.pitched:
        line = f"## Note: {note_text} ({note.cents:+.0f} cents, {note.hz:.1f} Hz)"
    else:
        line = f"## Note: unpitched (rendered at {note_text})"
    remarks = [m for m in result.target.messages]
    return line + ("\n\n" + "\n".join(f"- {_escape(m)}" for m in remarks) if remarks else "")


def _percent(x: float) -> str:
    return f"{100 * x:.0f}%"


_CARD = ("border:1px solid var(--border-color-primary,#ddd);border-radius:8px;padding:6px 10px;"
         "background:var(--block-background-fill,#fff)")
_CELL = "padding:1px 4px;border:none;vertical-align:top"


def _preset_html(d: PresetView) -> str:
    """The preset by module (a `describe.PresetView`), one card per active module in Vital's own display
    values, with the network's confidence beside each choice it made (categorical settings, wavetables)."""
    from html import escape

    parts = [f"<h3>{escape(d.name) if d.name else 'Predicted preset'}</h3>"]
    titles = dict(_SECTIONS)
    sections = [(titles[key], modules) for key, modules in d.sections if modules] + [("Global", [d.voice])]
    for title, modules in sections:
        parts.append(f"<h4 style='margin:12px 0 6px'>{title}</h4><div style='display:grid;"
                     "grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:10px'>")
        for m in modules:
            notes = []
            if m.position is not None:
                notes.append(f"#{m.position} in the effect chain")
            if m.inputs is not None:
                notes.append("fed by " + (", ".join(m.inputs) if m.inputs else "nothing"))
            if m.modulates:
                notes.append("modulates " + ", ".join(m.modulates))
            rows = []
            for st in m.settings:
                value = escape(st.value) + (f" ({escape(st.hz)})" if st.hz else "")
                conf = (f" <span title='confidence of this choice' style='opacity:.6'>{_percent(st.confidence)}"
                        "</span>" if st.confidence is not None else "")
                rows.append(f"<tr><td style='{_CELL}'>{escape(st.label)}</td>"
                            f"<td style='{_CELL};text-align:right'><b>{value}</b>{conf}</td></tr>")
            note_html = f"<div style='font-size:.8em;opacity:.7'>{escape('; '.join(notes))}</div>" if notes else ""
            parts.append(f"<div style='{_CARD}'><div style='font-weight:600'>{escape(m.title)}</div>{note_html}"
                         "<table style='width:100%;font-size:.85em;border-collapse:collapse;border:none;"
                         "margin:2px 0 0'>"
                         f"{''.join(rows)}</table></div>")
        parts.append("</div>")
    return "\n".join(parts)


def _routes_md(d: PresetView, confidence: tuple[float, ...]) -> str:
    """The view's modulation routes as a Markdown table, with the network's confidence in each route."""
    routes = d.modulation
    if not routes:
        return "### Modulation routes\n\nNo modulation routes: the sound is static apart from its envelopes."
    lines = ["### Modulation routes", "", "| Source | Destination | Amount | Options | Confidence |",
             "|---|---|---|---|---|"]
    for i, r in enumerate(routes):
        options = ", ".join(x for x, on in (("bipolar", r.bipolar), ("stereo", r.stereo)) if on)
        if r.power:
            options += (", " if options else "") + f"power {r.power:+.3g}"
        conf = _percent(confidence[i]) if i < len(confidence) else ""
        lines.append(f"| {_escape(r.source_label)} | {_escape(r.destination_label)} | {r.amount_text} | "
                     f"{options} | {conf} |")
    return "\n".join(lines)


# ---- the app ---------------------------------------------------------------------------------------------


def build_app(pipeline, *, max_upload_mb: float = MAX_UPLOAD_MB, max_seconds: float = MAX_SECONDS,
              temp_dir: str | Path | None = None, threads: int | None = None):
    """The Gradio app for a loaded `inference.predict.Pipeline`. Serve it with `serve(app, ...)`.

    temp_dir: where the app's temporary folder is made (default: the system's). It becomes gradio's upload
    and cache folder for this process (GRADIO_TEMP_DIR): build one app per process."""
    workspace = Workspace(temp_dir)
    # Set before gradio is imported (some of its modules read it at import time) and before any component
    # exists (each reads it when made): uploads and served outputs then live in the workspace alone.
    os.environ["GRADIO_TEMP_DIR"] = str(workspace.gradio)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(workspace.root / "examples")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    max_bytes = int(max_upload_mb * 10**6)

    from inference.refine import RefineConfig
    from inference.search import SEARCHERS

    def predict(path, refine, evals, search=RefineConfig.search, progress=gr.Progress()):
        out = run(path, pipeline=pipeline, workspace=workspace, refine=bool(refine), evals=int(evals), search=search,
                  max_bytes=max_bytes, max_seconds=max_seconds, progress=progress, threads=threads)
        return (out["status"], out["note"], out["vital"], out["spectrogram"], out["target"], out["prediction"],
                gr.Audio(value=out["refined"], visible=out["refined"] is not None), out["preset"], out["routes"],
                out["tutorial"])

    with gr.Blocks(title="vital-match", delete_cache=(600, CACHE_SECONDS)) as app:
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1):
                clip = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Your clip (one note)",
                                elem_id="clip")
                gr.Markdown(f"WAV, FLAC, OGG, MP3 or AIFF; at most {max_upload_mb:g} MB and {max_seconds:g} s.")
                refine = gr.Checkbox(label="Refine by listening (a search on Vital renders)", value=False,
                                     elem_id="refine")
                search = gr.Dropdown(choices=list(SEARCHERS), value=RefineConfig.search, label="Search method",
                                     elem_id="search")
                evals = gr.Slider(10, MAX_EVALS, value=RefineConfig.evals, step=10, label="Refinement budget (renders)",
                                  elem_id="evals")
                button = gr.Button("Predict preset", variant="primary", elem_id="predict")
                status = gr.Markdown(elem_id="status")
                note = gr.Markdown(elem_id="note")
                vital = gr.File(label="Vital preset (.vital)", interactive=False, elem_id="vital")
            with gr.Column(scale=2):
                spectrogram = gr.Image(label="Target vs prediction (log-mel)", type="filepath", interactive=False,
                                       elem_id="spectrogram")
                with gr.Row():
                    target = gr.Audio(label="Target (as the model hears it)", interactive=False, elem_id="target")
                    prediction = gr.Audio(label="Prediction", interactive=False, elem_id="prediction")
                    refined = gr.Audio(label="Refined", interactive=False, visible=False, elem_id="refined")
                routes = gr.Markdown(elem_id="routes")
        preset = gr.HTML(elem_id="preset")
        with gr.Accordion("Tutorial: build it by hand in Vital", open=False):
            tutorial = gr.Markdown(elem_id="tutorial")
        button.click(predict, inputs=[clip, refine, evals, search],
                     outputs=[status, note, vital, spectrogram, target, prediction, refined, preset, routes, tutorial],
                     api_name="predict")
    app.queue(default_concurrency_limit=1, max_size=MAX_QUEUE)
    app.workspace = workspace
    app.max_upload_mb = max_upload_mb
    return app


def serve(app, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False, block: bool = True):
    """Launch `app` (from build_app) with its upload limit and its workspace as the only served folder.
    block=False returns at once (the server runs in a thread; `app.close()` stops it)."""
    return app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                      max_file_size=int(app.max_upload_mb * 10**6), allowed_paths=[str(app.workspace.root)],
                      ssr_mode=False, show_error=False, inbrowser=False, run_history=False)


def launch(checkpoint: str | Path | None = None, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           *, max_upload_mb: float = MAX_UPLOAD_MB, max_seconds: float = MAX_SECONDS) -> None:
    """Load a checkpoint (default: the shipped model; CheckpointError with one line) and serve the demo
    until interrupted. Local by default; share=True also opens a public gradio.live link."""
    from inference.predict import Pipeline

    pipeline = Pipeline.from_checkpoint(checkpoint)
    log.info("demo: checkpoint %s, serving on http://%s:%d", pipeline.path, host, port)
    app = build_app(pipeline, max_upload_mb=max_upload_mb, max_seconds=max_seconds)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server like Ctrl-C: temp files are removed
    try:
        serve(app, host=host, port=port, share=share, block=True)
    finally:
        app.close()
        app.workspace.cleanup()


def _interrupt(signum, frame):
    raise KeyboardInterrupt
