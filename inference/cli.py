"""`python -m inference`: infer (clip -> .vital), demo (Gradio), benchmark. Heavy imports inside commands."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from datagen.console import CliError, ConfigError, Group, Interrupted, check_writable, setup_logging
from inference.benchmark import BenchmarkConfig
from inference.clips import TargetError


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Turn a recorded synth note into a Vital preset."""
    setup_logging(verbose)


checkpoint_option = click.option("-c", "--checkpoint", type=click.Path(path_type=Path), default=None,
                                 help="Model checkpoint (default: the model shipped in the package).")


def _inputs(paths: tuple[Path, ...]) -> list[Path]:
    """Files as given; folders expanded to the audio files directly inside them (sorted)."""
    from inference.audio import AUDIO_SUFFIXES

    out = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())
            if not found:
                raise CliError(f"{p}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
            out.extend(found)
        elif not p.exists():
            raise CliError(f"{p}: no such file")
        else:
            out.append(p)  # an unreadable file is reported by audio.prepare, in its own words
    return out


def refine_options(f):
    from inference.refine import RefineConfig
    from inference.search import SEARCHERS

    for decorator in reversed([
        click.option("--refine", is_flag=True, help="Refine by listening (a search on rendered audio)."),
        click.option("--search", "search_name", type=click.Choice(list(SEARCHERS)), default=RefineConfig.search,
                     show_default=True, help="The search method (inference/search/)."),
        click.option("--refine-evals", type=click.IntRange(min=1), default=RefineConfig.evals, show_default=True,
                     help="Renders the search may spend, its proposals included."),
        click.option("--proposals", type=click.IntRange(min=1), default=RefineConfig.proposals, show_default=True,
                     help="Starts rendered first: network samples, bank neighbours, sampler draws."),
        click.option("--bank", "bank_path", type=click.Path(path_type=Path), default=None,
                     help="Preset bank for proposals (default: the one shipped in the package; 'none': no bank)."),
        click.option("--refine-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Stop refining after this many seconds."),
        click.option("--refine-sigma", type=click.FloatRange(0, 1, min_open=True), default=RefineConfig.sigma,
                     show_default=True, help="Initial continuous step (normalised units)."),
        click.option("--threads", type=click.IntRange(min=1), default=None,
                     help="Render processes for refinement (default: one per core)."),
        click.option("--seed", type=int, default=0, show_default=True),
    ]):
        f = decorator(f)
    return f


@main.command()
@click.option("-i", "--input", "inputs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Audio file or folder of audio files (repeatable).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="The .vital file (one input) or a folder (several inputs).")
@checkpoint_option
@refine_options
@click.option("--render", "render_to", type=click.Path(path_type=Path), default=None,
              help="Also write the final preset's audio at the detected note (.wav or .flac; a folder for several "
                   "inputs).")
@click.option("--plot", "plot_to", type=click.Path(path_type=Path), default=None,
              help="Also write target vs prediction (vs refined) spectrograms (.png; a folder for several).")
@click.option("--tutorial", "tutorial_to", type=click.Path(path_type=Path), default=None,
              help="Also write a step-by-step tutorial (.md; an LLM with ANTHROPIC_API_KEY, else a template).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable results (JSON) instead of text.")
@click.option("--device", default="cpu", show_default=True, help="Torch device for the network.")
def infer(inputs, output, checkpoint, refine, search_name, refine_evals, proposals, bank_path, refine_timeout,
          refine_sigma, threads, seed, render_to, plot_to, tutorial_to, as_json, device):
    """Predict a Vital preset for each clip (one note, 1-4 s) and write it as .vital.

    Outputs never replace an input, two inputs never share an output, and every file is written atomically."""
    from datagen.atomic import remove_stale
    from inference.audio import AudioError
    from inference.outputs import make_folders, plan
    from inference.refine import RefineConfig
    from training.checkpoint import CheckpointError

    files = _inputs(inputs)
    many = len(files) > 1 or any(p.is_dir() for p in inputs)
    plans = plan(files, output=output, render=render_to, plot=plot_to, tutorial=tutorial_to, many=many)
    config = RefineConfig(evals=refine_evals, timeout=refine_timeout, sigma=refine_sigma, seed=seed,
                          threads=threads, search=search_name, proposals=proposals) if refine else None
    bank = _bank(bank_path) if refine else None
    t0 = time.perf_counter()
    try:
        from inference.predict import Pipeline

        pipeline = Pipeline.from_checkpoint(checkpoint, device=device)
    except CheckpointError as e:
        raise CliError(str(e)) from None
    load_seconds = time.perf_counter() - t0
    make_folders(plans)
    for folder in {p.parent for o in plans for p in o.paths().values()}:
        remove_stale(folder)  # temp files a killed run left behind
    results, failed = [], []
    try:
        for o in plans:
            try:
                results.append(_one(o, pipeline, config=config, bank=bank, quiet=as_json))
            except (AudioError, OSError) as e:
                reason = str(e) if isinstance(e, AudioError) else f"{o.source}: cannot write ({e.strerror or e})"
                if not many:
                    raise CliError(reason) from None
                failed.append(str(o.source))
                click.echo(f"error: {reason}", err=True)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {len(results)} of {len(plans)} clip(s) done and written, "
                          f"the rest not started") from None
    if as_json:
        click.echo(json.dumps({"checkpoint": str(pipeline.path), "load_seconds": load_seconds,
                               "results": results, "failed": failed}, indent=2))
    if failed:
        raise CliError(f"{len(failed)} of {len(plans)} inputs failed")


def _bank(path: Path | None):
    """The preset bank at `path` ("none": no bank), or the shipped one (None when the install has none)."""
    from datagen.bank import BankError
    from inference.proposals import load_bank

    if path is not None and str(path) == "none":
        return None
    try:
        return load_bank(str(path) if path is not None else None)
    except BankError as e:
        raise CliError(str(e)) from None


def _one(o, pipeline, *, config, bank, quiet) -> dict:
    """Run the main job for one clip (`o`: its `outputs.Outputs`), write its files, return its JSON-able result."""
    from datagen.atomic import write_text
    from inference import export
    from inference.match import match

    result = match(o.source, pipeline, refine=config, bank=bank, show_progress=not quiet)
    note = result.note
    t0 = time.perf_counter()
    export.export_match(result, o.vital, stem=o.stem, pipeline=pipeline)
    timings = {**result.timings, "export": time.perf_counter() - t0}
    sr = pipeline.features.sample_rate
    if o.png is not None:  # target, prediction (and refined): the last one is the final preset's audio
        spectra = export.match_audio(result, pipeline=pipeline)
        export.plot(spectra, o.png, features=pipeline.features,
                    title=f"{o.source.name} at {export.note_name(note.midi)}")
        final = list(spectra.values())[-1]
    elif o.wav is not None:
        final = export.render(result.preset, note=note.midi, config=pipeline.render,
                              seconds=pipeline.features.duration, key_held=result.target.key_held)
    if o.wav is not None:
        export.write_wav(final, o.wav, sample_rate=sr)
    tutorial_source = None
    if o.md is not None:
        from inference.tutorial import tutorial

        tut = tutorial(result.preset, registry=pipeline.registry, note=export.note_name(note.midi),
                       confidence=result.prediction.confidence)
        write_text(o.md, tut.text)
        tutorial_source = tut.source
        if not quiet:
            click.echo(f"tutorial: {tut.notice}")
    r = result.refinement
    path = o.source
    if not quiet:
        line = f"{path}: {export.note_name(note.midi)} ({note.cents:+.0f} cents)" if note.pitched \
            else f"{path}: unpitched (rendered at {export.note_name(note.midi)})"
        line += f", {export.held_text(result.target)} -> {o.vital}"
        if r is not None:
            line += (f"; refined spectral distance {r.initial_loss:.3f} -> {r.final_loss:.3f} in {r.evaluations} "
                     f"renders ({r.method}, {r.seconds:.1f} s)")
        click.echo(line)
    preset = result.preset
    return {
        "input": str(path), "output": str(o.vital), "render": str(o.wav) if o.wav else None,
        "plot": str(o.png) if o.png else None, "tutorial": str(o.md) if o.md else None,
        "tutorial_source": tutorial_source,
        "note": {"midi": note.midi, "name": export.note_name(note.midi), "cents": note.cents, "hz": note.hz,
                 "pitched": note.pitched, "n_notes": note.n_notes},
        "key_held": result.target.key_held, "held_to_end": result.target.held_to_end,
        "died_away": result.target.died_away,
        "messages": list(result.target.messages),
        "parameters": {p.name: preset.raw(p.name, pipeline.registry) for p in pipeline.registry.params},
        "confidence": result.prediction.confidence,
        "wavetable_confidence": list(result.prediction.wavetable_confidence),
        "modulations": [{"source": m.source, "destination": m.destination, "amount": m.amount, "bipolar": m.bipolar,
                         "power": m.power, "stereo": m.stereo, "confidence": c}
                        for m, c in zip(preset.modulations, result.prediction.modulation_confidence)],
        "refinement": None if r is None else {
            "initial_loss": r.initial_loss, "final_loss": r.final_loss, "evaluations": r.evaluations,
            "failures": r.failures, "seconds": r.seconds, "params": list(r.params), "search": r.method,
            "restarts": r.restarts},
        "timings": timings,
    }


@main.command("bench-speed")
@click.option("-i", "--input", "clip", type=click.Path(path_type=Path), required=True, help="A clip (2 s, one note).")
@checkpoint_option
@click.option("--evals", type=click.IntRange(min=2), default=500, show_default=True, help="Refinement budget.")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="Render processes.")
@click.option("--repeats", type=click.IntRange(min=1), default=10, show_default=True, help="Timed predictions.")
def bench_speed(clip, checkpoint, evals, threads, repeats):
    """Load time, prediction latency, refinement renders/s vs raw vita x threads (one run)."""
    from inference.audio import AudioError
    from training.checkpoint import CheckpointError

    t0 = time.perf_counter()
    try:
        import torchvision  # noqa: F401  (timed apart: importing torch + torchvision is most of a cold start)

        from inference.predict import Pipeline
        from inference.speed import bench_speed as run

        t1 = time.perf_counter()
        pipeline = Pipeline.from_checkpoint(checkpoint)
        t2 = time.perf_counter()
        result = run(pipeline, clip, evals=evals, threads=threads, repeats=repeats, load_seconds=t2 - t1)
        result = {"import_s": t1 - t0, **result}
    except (CheckpointError, AudioError) as e:
        raise CliError(str(e)) from None
    click.echo(json.dumps(result, indent=2))
    r = result
    click.echo(f"imports {r['import_s']:.2f} s, load {r['load_s']:.2f} s; predict {r['predict_median_s'] * 1000:.0f} ms "
               f"(median); {r['candidates']} candidates on {threads} cores: raw vita (reused Synth) "
               f"{r['raw_reused_renders_per_s']:.1f} renders/s; pool {r['pool_base_renders_per_s']:.1f}/s = "
               f"{r['pool_base_ratio']:.2f} x raw (whole presets {r['pool_whole_ratio']:.2f} x; fresh-Synth threads "
               f"{r['threads_fresh_ratio']:.2f} x); objective {r['objective_ms']:.1f} ms = "
               f"{r['objective_share']:.0%} of a candidate; refine {r['refine_evaluations']} evaluations in "
               f"{r['refine_wall_s']:.1f} s")


@main.command("bench-target")
@click.option("-i", "--input", "inputs", multiple=True, required=True, type=click.Path(path_type=Path),
              help=".vital presets or folders of them (repeatable).")
@click.option("--notes", default="48,60,72", show_default=True, help="MIDI notes of the pitch part.")
@click.option("--key-held", default="0.3,0.8,1.5", show_default=True,
              help="Seconds the key is held in the note-length part ('none' skips it).")
@click.option("--length-presets", type=click.IntRange(min=1), default=12, show_default=True,
              help="Presets (spread over the sorted list) of the note-length part.")
@click.option("--json", "as_json", is_flag=True, help="Print every row as JSON.")
def bench_target(inputs, notes, key_held, length_presets, as_json):
    """How well the note reader finds each clip's pitch and key-held time, on renders of real presets."""
    from inference.notes_benchmark import run

    for p in inputs:
        if not p.exists():
            raise CliError(f"{p}: no such file or folder")
    held = () if key_held == "none" else _floats(key_held, "key-held")
    try:
        result = run(list(inputs), notes=_notes(notes), key_held=held, length_presets=length_presets)
    except TargetError as e:
        raise CliError(str(e).splitlines()[0]) from None
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    p, n = result["pitch"], result["length"]
    click.echo(f"pitch: {p['clips']} clips; pitch class right {p['pitch_class']:.1%}; octave right {p['octave']:.1%} "
               f"of {p['tonal_clips']} with a sounding note; unpitched {p['unpitched']} "
               f"({p['unpitched_tonal']} of them tonal); several notes {p['several_at_once']}; "
               f"{p['mean_seconds']:.2f} s per clip")
    if n.get("cases"):
        click.echo(f"key held: {n['cases']} cases; error mean {n['mean_error']:.3f} s, median {n['median_error']:.3f} s, "
                   f"max {n['max_error']:.3f} s; within 50 ms {n['within_50ms']:.0%} "
                   f"(or rendering the same: {n['within_50ms_or_equivalent']:.0%})")


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise CliError(f"--{name} takes comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 < v <= 60 for v in values):
        raise CliError(f"--{name} takes seconds in (0, 60], got {text!r}")
    return values


def _notes(text: str) -> tuple[int, ...]:
    """--notes: comma-separated MIDI notes 0..127 (one line otherwise)."""
    notes = _ints(text, "notes")
    if not notes or not all(0 <= n <= 127 for n in notes):
        raise CliError(f"--notes must be MIDI notes 0..127, got {text!r}")
    return notes


def _ints(text: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise CliError(f"--{name} takes comma-separated integers, got {text!r}") from None


@main.command()
@click.option("-i", "--input", "inputs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="WAV clips, .vital presets, folders of either, or an .h5 data set (its test split). Repeatable.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Folder for clips.jsonl, results.md, results.png, summary.json (an existing run resumes).")
@checkpoint_option
@click.option("--methods", default=",".join(BenchmarkConfig.methods), show_default=True,
              help="Comma-separated: init, network, mean, random, or <start>+<search> (start: init, network, "
                   "proposals, samples (the network's alone), draws (the sampler's alone); search: a registered "
                   "searcher, e.g. cma, evolve, random).")
@click.option("--budgets", default=",".join(map(str, BenchmarkConfig.budgets)), show_default=True,
              help="Comma-separated render budgets (0: the methods that do not search).")
@click.option("--proposals", type=click.IntRange(min=1), default=BenchmarkConfig.proposals, show_default=True,
              help="Starts of the proposals+, samples+ and draws+ methods (within the budget).")
@click.option("--notes", default="48,60,72", show_default=True, help="MIDI notes .vital presets are rendered at.")
@click.option("--key-held", default="1.5", show_default=True,
              help="Comma-separated seconds the key is held in renders of .vital targets (short notes: 0.3,0.8).")
@click.option("--search-key-held", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Render candidates with the key held this long instead of each clip's detected key-held time.")
@click.option("--max-clips", type=click.IntRange(min=1), default=None, help="Score at most this many targets.")
@click.option("--bank", "bank_path", type=click.Path(path_type=Path), default=None,
              help="Preset bank of the proposals+... methods (default: the shipped one; 'none': no bank).")
@click.option("--split", type=click.Choice(["build", "score"]), default=None,
              help="Only the presets a folder's README.md lists in this half of the fixed split (score on 'score').")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Render processes (default: one per core).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--keep-presets", is_flag=True,
              help="Also write every scored preset, as OUTPUT/presets/CLIP/METHOD@BUDGET.vital.")
def benchmark(inputs, output, checkpoint, methods, budgets, proposals, notes, key_held, search_key_held, max_clips,
              bank_path, split, threads, seed, keep_presets):
    """Score the init preset, the network, random search and any registered search from any start on targets."""
    from datagen.dataset import DatasetError
    from datagen.wavetables import WavetableError
    from inference.audio import AudioError
    from training.checkpoint import CheckpointError

    try:
        from inference.benchmark import run
        from inference.clips import list_clips
        from inference.report import markdown
        from inference.predict import Pipeline

        config = BenchmarkConfig(methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
                                 budgets=_ints(budgets, "budgets"), threads=threads, seed=seed, proposals=proposals,
                                 fixed_key_held=search_key_held, keep_presets=keep_presets)
        note_list, held = _notes(notes), _floats(key_held, "key-held")
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CliError(f"{output}: cannot make this output folder ({e.strerror or e})") from None
        check_writable(output / "clips.jsonl")
        pipeline = Pipeline.from_checkpoint(checkpoint)
        clips = list_clips(inputs, features=pipeline.features, render=pipeline.render, notes=note_list,
                           max_clips=max_clips, seed=seed, split=split, key_held=held)
        if not clips:
            raise CliError("no targets to score")
        click.echo(f"{len(clips)} targets, methods {', '.join(config.methods)}, budgets "
                   f"{', '.join(map(str, config.budgets))}", err=True)
        summary = run(clips, pipeline=pipeline, config=config, out_dir=output, bank=_bank(bank_path))
    except (ConfigError, TargetError, CheckpointError, AudioError, DatasetError, WavetableError) as e:
        raise CliError(str(e).splitlines()[0]) from None
    click.echo(markdown(summary))
    click.echo(f"wrote {output / 'clips.jsonl'}, results.md, results.png, summary.json", err=True)


@main.command()
@checkpoint_option
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 serves your network: anyone who can reach it can use the app).")
@click.option("--share", is_flag=True, help="Also open a public gradio.live link (needs internet access).")
def demo(checkpoint, port, host, share):
    """The Gradio app: upload or record a note, get the preset, its sound and a tutorial (local by default)."""
    import importlib.util

    from training.checkpoint import CheckpointError

    if importlib.util.find_spec("gradio") is None:
        raise CliError("the demo needs gradio: pip install -e '.[demo]'")
    from inference.demo import launch

    try:
        launch(checkpoint, host=host, port=port, share=share)
    except CheckpointError as e:
        raise CliError(str(e)) from None
    except OSError as e:  # port taken, address not available
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CliError(f"cannot serve on {host}:{port}: {reason}") from None
