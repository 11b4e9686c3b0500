"""The Gradio demo: bad uploads as one-line messages (direct calls), then the real app on localhost driven in
headless Chromium (Debian's /usr/bin/chromium through Playwright; no browser is ever downloaded)."""

from __future__ import annotations

import io
import os
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datagen.features import FeatureConfig
from datagen.preset import read_vital
from datagen.render import Renderer

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("VITAL_MATCH_CHROMIUM", "/usr/bin/chromium"))
SR = FeatureConfig.sample_rate  # Hz
TIMEOUT_MS = 120_000  # per prediction in the browser: generous for 2 busy cores

pytestmark = [
    pytest.mark.slow,
    # gradio's queue calls pandas APIs that pandas 3 deprecates; not ours to fix
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


@pytest.fixture(scope="module")
def pipeline(tiny_checkpoint):
    """The tiny checkpoint (conftest), trained with the default FeatureConfig (the app's model)."""
    pytest.importorskip("gradio", reason="the demo needs gradio: pip install -e '.[demo]'")
    from inference.predict import Pipeline

    return Pipeline.from_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """examples/presets/saw_pluck.vital played at MIDI 48 (C3), 2 s, as a WAV a producer would upload."""
    audio = Renderer().render(read_vital(ROOT / "examples" / "presets" / "saw_pluck.vital"), note=48)  # (n,) 44.1 kHz
    path = tmp_path_factory.mktemp("clips") / "saw pluck.wav"
    sf.write(path, audio, SR)
    return path


@pytest.fixture(autouse=True)
def offline_tutorial(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)  # the template, never the network


# ---- bad uploads: direct calls to the job the page runs ---------------------------------------------------


def test_bad_uploads_are_one_line_messages_and_temp_folders_are_cleaned(pipeline, tmp_path):
    from inference.demo import Workspace, run

    ws = Workspace(tmp_path, keep_seconds=0)
    t = np.arange(int(0.5 * SR)) / SR
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    cases = {
        "notes.wav": None,  # text
        "blip.wav": tone[:100],  # 2.3 ms: shorter than one 2048-sample frame
        "quiet.wav": np.zeros(SR, np.float32),
        "long.wav": np.tile(tone, 62),  # 31 s
        "big.wav": tone,  # over a 0.01 MB limit
    }
    for name, audio in cases.items():
        if audio is None:
            (tmp_path / name).write_text("these are my notes, not audio\n")
        else:
            sf.write(tmp_path / name, audio, SR)
    expected = {
        "notes.wav": "notes.wav: not an audio file soundfile can read",
        "blip.wav": "blip.wav: clip is 0.002 s long, the minimum is 0.046 s",
        "quiet.wav": "quiet.wav: is digital silence",
        "long.wav": "long.wav: clip is 31.0 s long, the limit is 30 s",
        "big.wav": "big.wav: file is 0.0 MB, the limit is 0.01 MB",
    }
    for name, message in expected.items():
        out = run(tmp_path / name, pipeline=pipeline, workspace=ws, max_bytes=10_000 if name == "big.wav" else 10**7)
        assert out["ok"] is False and out["vital"] is None and out["note"] == "", name
        text = out["status"].replace("\\", "")  # Markdown escapes
        assert "Could not use this clip" in text and message in text, text
        assert str(tmp_path) not in text  # the user's file name, never a server path
    assert run(None, pipeline=pipeline, workspace=ws)["ok"] is False
    assert len(list(ws.root.glob("req-*"))) == 1  # each request removed the finished ones before it
    ws.cleanup()
    assert not ws.root.exists()


def test_an_unexpected_failure_is_logged_and_shown_in_one_line(pipeline, clip, tmp_path, caplog):
    from inference.demo import Workspace, run

    class Broken:
        def __getattr__(self, name):
            return getattr(pipeline, name)

        def predict(self, target, **kwargs):
            raise RuntimeError("CUDA out of memory at /secret/path")

    ws = Workspace(tmp_path)
    out = run(clip, pipeline=Broken(), workspace=ws)
    assert out["ok"] is False and out["vital"] is None
    text = out["status"].replace("\\", "")  # Markdown escapes
    assert "Something went wrong (RuntimeError)" in text and "/secret" not in text
    assert "demo: failed on saw pluck.wav" in caplog.text and "CUDA out of memory" in caplog.text  # with traceback
    ws.cleanup()


def test_check_upload_limits(tmp_path):
    from inference.audio import AudioError
    from inference.demo import check_upload

    path = tmp_path / "a.wav"
    sf.write(path, np.full(SR * 3, 0.1, np.float32), SR)  # 3 s, 264 KB at 16 bits
    check_upload(path, max_bytes=10**6, max_seconds=3.0)  # at the limits: accepted
    with pytest.raises(AudioError, match=r"^a.wav: clip is 3.0 s long, the limit is 2.5 s"):
        check_upload(path, max_bytes=10**6, max_seconds=2.5)
    with pytest.raises(AudioError, match=r"^a.wav: file is 0.3 MB, the limit is 0.2 MB$"):
        check_upload(path, max_bytes=200_000, max_seconds=30)


# ---- the real app in a real browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sync_playwright():
    """Playwright's sync API, or a skip that says how to get it (before the checkpoint is trained)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (Debian; .ci/run does it as root) "
                    "or set VITAL_MATCH_CHROMIUM")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is missing: pip install -e '.[demo]' (no `playwright install`: "
                    "the test drives the system Chromium)")
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _predict(page, path: Path, *, refine: bool, evals: int | None = None):
    from playwright.sync_api import expect

    upload = page.locator("#clip input[type=file]")
    upload.or_(page.locator("#clip button[aria-label='Clear']")).first.wait_for(state="attached")
    if not upload.count():  # a clip is loaded: clear it to get the upload box back
        page.locator("#clip button[aria-label='Clear']").first.click()
    upload.set_input_files(str(path))
    # the upload landed (while gradio re-renders the player, two Clear buttons can exist for a moment)
    expect(page.locator("#clip button[aria-label='Clear']").first).to_be_visible()
    checkbox = page.locator("#refine input[type=checkbox]")
    if checkbox.is_checked() != refine:
        checkbox.click()
    if evals is not None:
        budget = page.locator("#evals input[type=number]")
        budget.fill(str(evals))
        budget.press("Enter")
        expect(budget).to_have_value(str(evals))
    page.locator("#predict").click()


class CountingPipeline:
    """The pipeline, counting how many predictions run at once (the queue should allow one)."""

    def __init__(self, pipeline):
        self._pipeline, self._lock, self.running, self.most = pipeline, threading.Lock(), 0, 0

    def __getattr__(self, name):
        return getattr(self._pipeline, name)

    def predict(self, target, **kwargs):
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.5)  # let other jobs try to start meanwhile
            return self._pipeline.predict(target, **kwargs)
        finally:
            with self._lock:
                self.running -= 1


def test_demo_in_a_browser(sync_playwright, pipeline, clip, tmp_path):
    import httpx
    from gradio_client import Client, handle_file
    from playwright.sync_api import expect

    from inference.demo import build_app, serve

    counting = CountingPipeline(pipeline)
    app = build_app(counting, temp_dir=tmp_path)
    root = app.workspace.root
    port = _free_port()
    serve(app, host="127.0.0.1", port=port, block=False)
    url = f"http://127.0.0.1:{port}/"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            page = browser.new_page(accept_downloads=True)
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            page.goto(url)

            # 1. a good clip, refined with a tiny budget
            _predict(page, clip, refine=True, evals=10)
            expect(page.locator("#status")).to_contain_text("in 10 renders")
            expect(page.locator("#note")).to_contain_text("Note: C3")
            expect(page.locator("#preset")).to_contain_text("Envelope 1")
            expect(page.locator("#preset")).to_contain_text("Attack")
            expect(page.locator("#preset")).to_contain_text("Voice & master")
            expect(page.locator("#routes")).to_contain_text("Modulation routes")
            for player in ("#target", "#prediction", "#refined"):  # served from the app's own temp folder
                link = page.locator(f"{player} a[data-testid='download-link']")
                expect(link).to_have_attribute("href", re.compile(f"file={re.escape(str(root))}/.*{player[1:]}.wav$"))
            expect(page.locator("#spectrogram img")).to_be_visible()

            with page.expect_download() as info:
                page.locator("#vital a[download]").first.click()
            vital = tmp_path / "downloaded.vital"
            info.value.save_as(vital)
            assert info.value.suggested_filename == "saw pluck.vital"
            preset = read_vital(vital, registry=pipeline.registry)
            assert preset.name == "saw pluck (vital-match)"
            audio = Renderer().render(preset, note=48)  # (n,)
            rms = float(np.sqrt(np.mean(audio**2)))
            # Vital's silence is exact zeros; the tiny model's presets are quiet (about -70 dBFS RMS)
            assert np.isfinite(audio).all() and rms > 1e-5, rms
            # ... and the file is the sound the page played: the refined player's WAV has the same level
            href = page.locator("#refined a[data-testid='download-link']").get_attribute("href")
            played, rate = sf.read(io.BytesIO(httpx.get(href).content), dtype="float32")
            assert rate == SR and 0.5 < rms / float(np.sqrt(np.mean(played**2))) < 2.0

            # 2. too large: gradio refuses the upload itself (max_file_size) and says so in the page
            big = tmp_path / "huge.wav"
            with open(big, "wb") as f:
                f.truncate(21 * 10**6)  # over the 20 MB default, sparse on disk
            page.locator("#clip button[aria-label='Clear']").first.click()
            page.locator("#clip input[type=file]").set_input_files(str(big))
            expect(page.get_by_text("exceed the maximum allowed size")).to_be_visible()

            # 3. a text file named .wav: a message in the page, the app keeps working
            bad = tmp_path / "notes.wav"
            bad.write_text("these are my notes, not audio\n")
            _predict(page, bad, refine=False)
            expect(page.locator("#status")).to_contain_text("notes.wav: not an audio file soundfile can read")
            expect(page.locator("#note")).to_have_text("")

            # 4. ... and a good clip still works
            _predict(page, clip, refine=False)
            expect(page.locator("#note")).to_contain_text("Note: C3")
            expect(page.locator("#status")).to_contain_text("ready to download")
            browser.close()

        # three users at once: queued one after the other, all answered
        client = Client(url, verbose=False)
        jobs = [client.submit(handle_file(str(clip)), False, 10, "evolve", api_name="/predict") for _ in range(3)]
        results = [job.result(timeout=TIMEOUT_MS / 1000) for job in jobs]
        assert all("Note: C3" in r[1] for r in results), [r[0] for r in results]
        assert counting.most == 1

        # only the workspace is served: a served output is reachable, the repository and /etc are not
        served = next(root.glob("gradio/**/*.vital"))
        with httpx.Client(base_url=url) as client:
            assert client.get(f"gradio_api/file={served}").status_code == 200
            for outside in (ROOT / "pyproject.toml", Path("/etc/passwd"), clip):
                assert client.get(f"gradio_api/file={outside}").status_code == 403, outside
        assert len(list(root.glob("req-*"))) == 6  # one per job: none ended a minute ago (keep_seconds)
    finally:
        expect.set_options(timeout=5_000)  # playwright's default, for whoever runs next in this process
        app.close()
        app.workspace.cleanup()
    assert not root.exists()
