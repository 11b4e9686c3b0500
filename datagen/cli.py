"""`python -m datagen`: a thin shell over the library. Heavy imports happen inside commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

from datagen.bank import BankConfig
from datagen.console import CliError, ConfigError, Group, check_writable, setup_logging
from datagen.generate import GenerateConfig
from datagen.options import (length_options, no_audio_option, notes_option, quiet_option, shard_option,
                             tiers_option)
from datagen.perturb import PerturbConfig
from datagen.render import RenderConfig
from datagen.sampler import TIERS, VERSIONS


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Vital data tools: the parameter registry, presets, rendering and data sets."""
    setup_logging(verbose)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the full registry as JSON.")
def registry(as_json: bool) -> None:
    """Show the parameter registry discovered from the installed vita."""
    from datagen.registry import load_registry

    reg = load_registry()
    if as_json:
        click.echo(json.dumps({"summary": reg.summary(), **reg.describe()}, indent=1))
        return
    for k, v in reg.summary().items():
        click.echo(f"{k:>18}: {v}")
    click.echo("           modules:")
    for m in reg.modules:
        switch = m.on_switch or "-"
        click.echo(f"  {m.name:<11} {len(m.params):>3} params  on-switch: {switch:<14}"
                   + ("  (heard through modulation)" if m.needs_modulation else ""))


@main.command()
@click.argument("preset_path", metavar="PRESET.vital", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="WAV file to write.")
@click.option("--note", type=click.IntRange(0, 127), default=60, show_default=True, help="MIDI note.")
@click.option("--velocity", type=click.FloatRange(0, 1), default=RenderConfig.velocity, show_default=True)
@length_options
@click.option("--sample-rate", type=click.IntRange(8000, 192000), default=RenderConfig.sample_rate, show_default=True)
@click.option("--stereo", is_flag=True, help="Write both channels (default: mono mix).")
def render(preset_path: Path, output: Path, note: int, velocity: float, note_length: float, length: float,
           sample_rate: int, stereo: bool) -> None:
    """Render a .vital preset to a WAV file (in a crash-isolated worker)."""
    import numpy as np
    import soundfile as sf

    from datagen.atomic import atomic_path
    from datagen.features import rms
    from datagen.isolation import IsolatedRenderer, RenderCrash
    from datagen.preset import PresetError, read_vital
    from datagen.render import RenderError

    try:
        preset = read_vital(preset_path)
    except PresetError as e:
        raise CliError(str(e)) from None
    check_writable(output, suffixes=(".wav",), option="-o")
    if output.exists() and output.resolve() == preset_path.resolve():
        raise CliError(f"-o {output} is the input preset: refusing to overwrite an input")
    config = RenderConfig(sample_rate=sample_rate, velocity=velocity, note_length=note_length,
                          render_length=length, mono=not stereo)
    with IsolatedRenderer(config) as renderer:
        try:
            audio = renderer.render(preset, note=note, name=preset_path.name)
        except (RenderCrash, RenderError) as e:
            raise CliError(str(e)) from None
    with atomic_path(output) as tmp:
        sf.write(str(tmp), audio.T if stereo else audio, sample_rate, subtype="FLOAT")
    peak = float(np.abs(audio).max())
    click.echo(f"wrote {output} ({length:g} s, note {note}, peak {peak:.3f}, rms {rms(audio.ravel()):.4f})")


def _check_folder(folder: Path | None, option: str) -> None:
    if folder is not None and not folder.is_dir():
        raise CliError(f"{option} {folder}: " + ("is not a folder" if folder.exists() else "no such folder"))


@main.command("bench-render")
@click.option("--presets", "preset_dir", type=click.Path(path_type=Path),
              default=None, help="Folder of .vital files (default: ../shared/presets, else random presets).")
@click.option("-n", "--count", type=click.IntRange(min=1), default=20, show_default=True,
              help="Number of presets.")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Alternating rounds of raw vita and the engine.")
def bench_render(preset_dir: Path | None, count: int, rounds: int) -> None:
    """Render-engine throughput as a ratio to raw vita rendering of the same presets, in one run."""
    from datagen.throughput import bench_render as run, default_presets

    _check_folder(preset_dir, "--presets")
    presets, where = default_presets(preset_dir, count)
    click.echo(f"{len(presets)} presets from {where}; {rounds} alternating rounds")
    result = run(presets, rounds=rounds)
    click.echo(f"raw vita : {result['raw_renders_per_s']:.2f} renders/s")
    click.echo(f"engine   : {result['engine_renders_per_s']:.2f} renders/s")
    click.echo(f"ratio    : {result['ratio']:.3f} (goal >= 0.9)")



@main.command("bench-generate")
@click.option("-n", "--count", type=click.IntRange(min=2), default=24, show_default=True, help="Presets per run.")
@tiers_option(TIERS)
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("data/bench"), show_default=True)
def bench_generate(count: int, tiers: tuple[int, ...], workdir: Path) -> None:
    """Generation throughput vs raw vita, 1 -> 2 worker scaling, bytes per row, rejection rate per tier."""
    import shutil

    from datagen.throughput import bench_generate as run

    shutil.rmtree(workdir, ignore_errors=True)
    result = run(n_presets=count, tiers=tiers, workdir=workdir)
    click.echo("| tier | raw vita renders/s | 1 worker | ratio/worker | 2 workers | scaling | rejection | "
               "KB/row | KB/row no audio |")
    click.echo("|---|---|---|---|---|---|---|---|---|")
    for tier, r in result["tiers"].items():
        click.echo(f"| {tier} | {r['raw_renders_per_s']:.2f} | {r['renders_per_s_1w']:.2f} | "
                   f"{r['ratio_per_worker']:.2f} | {r['renders_per_s_2w']:.2f} | {r['scaling_2w']:.2f}x | "
                   f"{r['rejection_rate']:.0%} {r['rejected']} | {r['bytes_per_row'] / 1024:.0f} | "
                   f"{r['bytes_per_row_no_audio'] / 1024:.0f} |")
    shutil.rmtree(workdir, ignore_errors=True)


@main.command()
@click.option("--tier", type=click.IntRange(min(TIERS), max(TIERS)), default=GenerateConfig.tier, show_default=True,
              help="1 core voice; 2 + effects and wavetables; 3 + modulation.")
@click.option("-n", "--count", "n_presets", type=int, required=True, help="Number of presets (rows = presets x notes).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="HDF5 file to write.")
@click.option("--workers", type=int, default=1, show_default=True, help="Render worker processes.")
@click.option("--seed", type=int, default=GenerateConfig.seed, show_default=True)
@click.option("--sampler-version", type=click.Choice([str(v) for v in VERSIONS]),
              default=str(GenerateConfig.sampler_version), show_default=True,
              help="2 orders oscillators and filters canonically; 1 reproduces data sets made before it.")
@notes_option(GenerateConfig.notes)
@click.option("--note-shift", type=click.IntRange(min=0), default=GenerateConfig.note_shift, show_default=True,
              help="Move each preset's notes together by a random -N..N semitones (fixed by seed and index), so the "
                   "rows cover every note around --notes at no extra renders.")
@length_options
@no_audio_option
@shard_option(help="Write the i-th of N independent shards (e.g. a SLURM array task); join with `merge`.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=GenerateConfig.chunk_size, show_default=True,
              help="Presets per resumable chunk.")
@click.option("--wavetables-from", type=click.Path(path_type=Path), default=None,
              help="Add the wavetables of every .vital file below this folder to the catalog.")
@click.option("--perturb-from", type=click.Path(path_type=Path), default=None,
              help="Perturb the 'build' presets this folder's README lists (e.g. ../shared/presets) instead of "
                   "drawing from a tier; the data set is tier 0.")
@click.option("--recombine", type=click.FloatRange(0, 1), default=PerturbConfig.p_recombine, show_default=True,
              help="With --perturb-from: the chance that each module is first taken from another build preset.")
@quiet_option
def generate(tier, n_presets, output, workers, seed, sampler_version, notes, note_shift, length, note_length, no_audio,
             shard, chunk_size, wavetables_from, perturb_from, recombine, quiet):
    """Generate a training data set (resumable: rerun the same command after an interruption)."""
    from datagen.dataset import DatasetError
    from datagen.features import FeatureConfig
    from datagen.generate import generate as run

    if n_presets <= 0:
        raise CliError(f"--count must be a positive number of presets, got {n_presets}")
    if workers <= 0:
        raise CliError(f"--workers must be >= 1, got {workers}")
    check_writable(output)
    _check_folder(wavetables_from, "--wavetables-from")
    _check_folder(perturb_from, "--perturb-from")
    if recombine and not perturb_from:
        raise CliError("--recombine mixes the presets of --perturb-from: give that folder too")
    try:
        config = GenerateConfig(
            tier=tier, n_presets=n_presets, seed=seed, sampler_version=int(sampler_version), notes=notes,
            note_shift=note_shift, store_audio=not no_audio, shard=shard,
            chunk_size=chunk_size, wavetables_from=str(wavetables_from.resolve()) if wavetables_from else None,
            perturb_from=str(perturb_from.resolve()) if perturb_from else None,
            perturb=PerturbConfig(p_recombine=recombine),
            render=RenderConfig(render_length=length, note_length=note_length),
            features=FeatureConfig(duration=length))
        stats = run(output, config, workers=workers, show_progress=not quiet)
    except (ConfigError, DatasetError) as e:
        raise CliError(str(e)) from None
    rate = stats["generated"] / stats["seconds"] if stats["seconds"] else 0.0
    click.echo(f"{stats['output']}: {stats['presets']} presets, {stats['rows']} rows; generated {stats['generated']} "
               f"now ({rate:.2f} presets/s), rejection rate {stats['rejection_rate']:.1%} {stats['rejected']}")


@main.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
def merge(shards, output):
    """Join shard files into one virtual data set (no data copied)."""
    from datagen.dataset import DatasetError, merge as run

    check_writable(output)
    try:
        attrs = run(list(shards), output)
    except DatasetError as e:
        raise CliError(str(e)) from None
    click.echo(f"{output}: {attrs['n_rows']} rows from {len(shards)} shards")


# ---- data set tools: inspect, compute-weights, ingest, preview, precompute-mels ---------------------------

@main.command("inspect")
@click.argument("data", metavar="DATA.h5", type=click.Path(path_type=Path))
@click.option("--png", type=click.Path(path_type=Path), default=None,
              help="Also write a PNG of the mel spectrograms of 4 rows spread over the set.")
@click.option("--json", "as_json", is_flag=True, help="Print the full summary (every parameter) as JSON.")
def inspect_command(data: Path, png: Path | None, as_json: bool) -> None:
    """Summarise a data set: schema, attributes, splits, label statistics, loudness, modulations."""
    from datagen.dataset import DatasetError
    from datagen.summary import plot_mels, summarize, summary_text

    if png is not None:
        check_writable(png)
    try:
        s = summarize(data)
        rows = plot_mels(data, png) if png is not None else None
    except DatasetError as e:
        raise CliError(str(e)) from None
    if as_json:
        click.echo(json.dumps({**s, "png_rows": rows}, indent=1))
        return
    click.echo(summary_text(s))
    if rows is not None:
        click.echo(f"wrote {png} (mels of rows {', '.join(map(str, rows))})")


@main.command("compute-weights")
@click.argument("data", metavar="DATA.h5", type=click.Path(path_type=Path))
@click.option("--presets", type=click.IntRange(min=1), default=8, show_default=True,
              help="Train-split presets to average over.")
@click.option("--delta", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
              show_default=True, help="Perturbation of a normalised control.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Render worker processes (forked per render, so results do not depend on this).")
@click.option("--param", "params", multiple=True, help="Measure only these continuous controls (repeatable).")
@quiet_option
def compute_weights_command(data: Path, presets: int, delta: float, workers: int, params: tuple[str, ...],
                            quiet: bool) -> None:
    """Measure per-parameter importance (perturb, render, compare log-mels) and store it in the data set."""
    import os

    import numpy as np

    from datagen.dataset import DatasetError
    from datagen.importance import compute_weights
    from datagen.wavetables import WavetableError

    if data.exists() and not os.access(data, os.W_OK):
        raise CliError(f"{data}: is not writable (the weights are stored in the data set)")
    try:
        w = compute_weights(data, presets=presets, delta=delta, workers=workers, params=list(params) or None,
                            show_progress=not quiet)
    except (DatasetError, ConfigError, WavetableError) as e:
        raise CliError(str(e)) from None
    from datagen.registry import load_registry

    names = [p.name for p in load_registry().continuous]
    order = np.argsort(w)
    click.echo(f"{data}: stored importance_continuous ({len(w)} parameters, mean {w.mean():.3f})")
    click.echo("  most important:  " + ", ".join(f"{names[i]} {w[i]:.2f}" for i in order[::-1][:8]))
    click.echo("  least important: " + ", ".join(f"{names[i]} {w[i]:.3g}" for i in order[:8]))


@main.command("bank")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The bank file (.npz).")
@click.option("-n", "--presets-per-tier", type=click.IntRange(min=1), default=BankConfig.presets_per_tier,
              show_default=True, help="Sampler presets of each tier.")
@tiers_option(BankConfig.tiers)
@notes_option(BankConfig.notes, help="MIDI notes every preset is heard at.")
@click.option("--sampler-version", type=click.Choice([str(v) for v in VERSIONS]),
              default=str(BankConfig.sampler_version), show_default=True,
              help="The sampler that draws the tiers' presets (the shipped bank's are version 1).")
@click.option("--real", "real_folder", type=click.Path(path_type=Path), default=None,
              help="Also add the 'build' half of the real presets this folder's README.md lists (never 'score').")
@click.option("--perturbed", type=click.IntRange(min=0), default=BankConfig.perturbed, show_default=True,
              help="With --real: also add this many presets perturbed and recombined from those real ones (the "
                   "recipe of the network's realistic data).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Render processes (default: one per core).")
@shard_option(help="Build the i-th of N shards of the chunks; rerun without --shard (or the last shard) to "
                    "write the bank once all chunks exist.")
@quiet_option
def bank_command(output, presets_per_tier, tiers, notes, sampler_version, real_folder, perturbed, workers, shard,
                 quiet):
    """Build a preset bank (resumable: rerun the same command after an interruption)."""
    from datagen.bank import BankError, build
    from datagen.preset import PresetError, shared_split

    check_writable(output, suffixes=(".npz",), option="--output")
    if perturbed and not real_folder:
        raise CliError("--perturbed moves the real presets of --real: give that folder too")
    try:
        real = tuple(str(p) for p in shared_split("build", folder=real_folder)) if real_folder else ()
        config = BankConfig(presets_per_tier=presets_per_tier, tiers=tiers, notes=notes,
                            sampler_version=int(sampler_version), real=real, perturbed=perturbed)
        stats = build(output, config, workers=workers, shard=shard, show_progress=not quiet)
    except (BankError, PresetError) as e:
        raise CliError(str(e)) from None
    state = f"wrote {output}" if stats["written"] else f"{stats['done']} of {stats['chunks']} chunks done (rerun to finish)"
    click.echo(f"{state}: {stats['rows']} entries, {stats['seconds']:.0f} s")


@main.command("ingest")
@click.argument("folder", metavar="PRESET_DIR", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="HDF5 file to write.")
@notes_option(GenerateConfig.notes)  # ingest writes generate's schema, at generate's notes unless told
@length_options
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Render worker processes.")
@no_audio_option
@quiet_option
def ingest_command(folder: Path, output: Path, notes: tuple[int, ...], length: float, note_length: float, workers: int,
                   no_audio: bool, quiet: bool) -> None:
    """Turn a folder of real .vital presets into a data set (generate's schema, tier 0)."""
    from datagen.dataset import DatasetError
    from datagen.ingest import ingest

    if not folder.is_dir():
        raise CliError(f"{folder}: no such folder")
    check_writable(output)
    try:
        stats = ingest(folder, output, notes=notes, workers=workers, store_audio=not no_audio,
                       render=RenderConfig(render_length=length, note_length=note_length), show_progress=not quiet)
    except (DatasetError, ConfigError) as e:
        raise CliError(str(e)) from None
    click.echo(f"{stats['output']}: {stats['presets']} of {stats['files']} presets, {stats['rows']} rows in "
               f"{stats['seconds']:.1f} s; skipped {stats['skipped'] or 'none'}; clipped {stats['clipped']}; "
               f"catalog {stats['catalog_size']} tables ({stats['real_tables']} from the presets)")


@main.command("preview")
@click.argument("data", metavar="DATA.h5", type=click.Path(path_type=Path))
@click.option("--row", type=int, required=True, help="Row index.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="WAV file to write (default: play it, if the sounddevice package is installed).")
def preview_command(data: Path, row: int, output: Path | None) -> None:
    """Write (or play) one row's audio; re-rendered from its labels when the set stores no audio."""
    from datagen.dataset import DatasetError
    from datagen.summary import row_audio
    from datagen.render import RenderError

    if output is not None:
        check_writable(output)
    try:
        r = row_audio(data, row)
    except (DatasetError, RenderError) as e:
        raise CliError(str(e)) from None
    what = f"row {r.row} (preset {r.preset_index}, note {r.midi_note}, " + (
        "re-rendered from its labels)" if r.rendered else "stored audio)")
    if output is None:
        try:
            import sounddevice
        except (ImportError, OSError):
            raise CliError("cannot play audio here (no sounddevice package); pass -o out.wav to write a file") from None
        click.echo(f"playing {what}")
        sounddevice.play(r.audio, r.sample_rate)
        sounddevice.wait()
        return
    import soundfile as sf

    sf.write(str(output), r.audio, r.sample_rate, subtype="FLOAT")
    click.echo(f"wrote {output}: {what}, {len(r.audio) / r.sample_rate:g} s")


@main.command("precompute-mels")
@click.argument("data", metavar="DATA.h5", type=click.Path(path_type=Path))
@click.option("--n-mels", type=click.IntRange(min=1), default=None, help="Mel bands [default: the set's].")
@click.option("--n-fft", type=click.IntRange(min=16), default=None, help="STFT size [default: the set's].")
@click.option("--hop-length", type=click.IntRange(min=1), default=None, help="STFT hop [default: the set's].")
@click.option("--f-min", type=click.FloatRange(min=0, min_open=True), default=None, help="Hz [default: the set's].")
@click.option("--f-max", type=click.FloatRange(min=0, min_open=True), default=None, help="Hz [default: the set's].")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write a copy with the new mels (default: rewrite DATA.h5 in place).")
@quiet_option
def precompute_mels_command(data: Path, n_mels, n_fft, hop_length, f_min, f_max, output: Path | None,
                            quiet: bool) -> None:
    """Recompute the mel dataset from the stored audio with another feature configuration."""
    import os

    from datagen.dataset import DatasetError
    from datagen.summary import open_checked
    from datagen.remel import config_for, recompute_mels

    try:
        attrs = open_checked(data, need=("mel", "midi_note"))
        config = config_for(attrs, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length, f_min=f_min, f_max=f_max)
    except (DatasetError, ConfigError) as e:
        raise CliError(str(e)) from None
    if output is not None:
        check_writable(output)
    elif not os.access(data, os.W_OK):
        raise CliError(f"{data}: is not writable; pass -o to write a copy")
    try:
        r = recompute_mels(data, config, output=output, show_progress=not quiet)
    except DatasetError as e:
        raise CliError(str(e)) from None
    click.echo(f"{r['output']}: recomputed {r['rows']} mels, {tuple(r['old_shape'])} -> {tuple(r['shape'])} per row "
               f"in {r['seconds']:.1f} s" + ("" if not r["in_place"] else
                                            " (in place; `h5repack` reclaims the old mels' space)"))
