"""`python -m datagen`: a thin shell over the library. Heavy imports happen inside commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

from datagen.console import CliError, check_writable, setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--velocity", type=click.FloatRange(0, 1), default=0.8, show_default=True)
@click.option("--note-length", type=click.FloatRange(min=0, min_open=True), default=1.5, show_default=True,
              help="Seconds the key is held.")
@click.option("--length", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Seconds of audio.")
@click.option("--sample-rate", type=click.IntRange(8000, 192000), default=44100, show_default=True)
@click.option("--stereo", is_flag=True, help="Write both channels (default: mono mix).")
def render(preset_path: Path, output: Path, note: int, velocity: float, note_length: float, length: float,
           sample_rate: int, stereo: bool) -> None:
    """Render a .vital preset to a WAV file (in a crash-isolated worker)."""
    import numpy as np
    import soundfile as sf

    from datagen.isolation import IsolatedRenderer, RenderCrash
    from datagen.preset import PresetError, read_vital
    from datagen.render import RenderConfig, RenderError

    try:
        preset = read_vital(preset_path)
    except PresetError as e:
        raise CliError(str(e)) from None
    check_writable(output)
    config = RenderConfig(sample_rate=sample_rate, velocity=velocity, note_length=note_length,
                          render_length=length, mono=not stereo)
    with IsolatedRenderer(config) as renderer:
        try:
            audio = renderer.render(preset, note=note, name=preset_path.name)
        except (RenderCrash, RenderError) as e:
            raise CliError(str(e)) from None
    sf.write(str(output), audio.T if stereo else audio, sample_rate, subtype="FLOAT")
    peak = float(np.abs(audio).max())
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    click.echo(f"wrote {output} ({length:g} s, note {note}, peak {peak:.3f}, rms {rms:.4f})")


@main.command("bench-render")
@click.option("--presets", "preset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Folder of .vital files (default: ../shared/presets, else random presets).")
@click.option("-n", "--count", type=click.IntRange(min=1), default=20, show_default=True,
              help="Number of presets.")
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Alternating rounds of raw vita and the engine.")
def bench_render(preset_dir: Path | None, count: int, rounds: int) -> None:
    """Render-engine throughput as a ratio to raw vita rendering of the same presets, in one run."""
    from datagen.benchmark import bench_render as run, default_presets

    presets, where = default_presets(preset_dir, count)
    click.echo(f"{len(presets)} presets from {where}; {rounds} alternating rounds")
    result = run(presets, rounds=rounds)
    click.echo(f"raw vita : {result['raw_renders_per_s']:.2f} renders/s")
    click.echo(f"engine   : {result['engine_renders_per_s']:.2f} renders/s")
    click.echo(f"ratio    : {result['ratio']:.3f} (goal >= 0.9)")



def _parse_shard(ctx, param, value: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected i/N (e.g. 0/4), got {value!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise click.BadParameter(f"need 0 <= i < N, got {value}")
    return i, n


@main.command()
@click.option("--tier", type=click.IntRange(1, 3), default=3, show_default=True,
              help="1 core voice; 2 + effects and wavetables; 3 + modulation.")
@click.option("-n", "--count", "n_presets", type=int, required=True, help="Number of presets (rows = presets x notes).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="HDF5 file to write.")
@click.option("--workers", type=int, default=1, show_default=True, help="Render worker processes.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--notes", default="48,60,72", show_default=True, help="MIDI notes rendered per preset.")
@click.option("--length", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Seconds of audio per render.")
@click.option("--note-length", type=click.FloatRange(min=0, min_open=True), default=1.5, show_default=True,
              help="Seconds the key is held.")
@click.option("--no-audio", is_flag=True, help="Store mels and labels only (no 16-bit PCM audio).")
@click.option("--shard", default="0/1", show_default=True, callback=_parse_shard,
              help="Write the i-th of N independent shards (e.g. a SLURM array task); join with `merge`.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Presets per resumable chunk.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate(tier, n_presets, output, workers, seed, notes, length, note_length, no_audio, shard, chunk_size, quiet):
    """Generate a training data set (resumable: rerun the same command after an interruption)."""
    from datagen.dataset import DatasetError
    from datagen.features import FeatureConfig
    from datagen.generate import GenerateConfig, generate as run
    from datagen.render import RenderConfig

    if n_presets <= 0:
        raise CliError(f"--count must be a positive number of presets, got {n_presets}")
    if workers <= 0:
        raise CliError(f"--workers must be >= 1, got {workers}")
    try:
        note_list = tuple(int(x) for x in notes.split(","))
    except ValueError:
        raise CliError(f"--notes must be comma-separated MIDI numbers, got {notes!r}") from None
    check_writable(output)
    try:
        config = GenerateConfig(
            tier=tier, n_presets=n_presets, seed=seed, notes=note_list, store_audio=not no_audio, shard=shard,
            chunk_size=chunk_size, render=RenderConfig(render_length=length, note_length=note_length),
            features=FeatureConfig(duration=length))
        stats = run(output, config, workers=workers, show_progress=not quiet)
    except (ValueError, DatasetError) as e:
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
