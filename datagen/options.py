"""Click options shared by several `python -m datagen` commands: one definition each, so they cannot drift;
defaults come from the config dataclasses."""

from __future__ import annotations

import click

from datagen.console import CliError
from datagen.generate import GenerateConfig
from datagen.render import RenderConfig
from datagen.sampler import TIERS


def parse_notes(ctx, param, value: str) -> tuple[int, ...]:
    try:
        notes = tuple(int(x) for x in value.split(","))
    except ValueError:
        raise CliError(f"--notes must be comma-separated MIDI numbers, got {value!r}") from None
    if any(not 0 <= n <= 127 for n in notes):
        raise CliError(f"--notes must be MIDI numbers 0..127, got {value!r}")
    return notes


def notes_option(default: tuple[int, ...], *, help: str = "MIDI notes rendered per preset."):
    """--notes "48,60,72" -> (48, 60, 72)."""
    return click.option("--notes", default=",".join(map(str, default)), show_default=True, callback=parse_notes,
                        help=help)


def parse_tiers(ctx, param, value: str) -> tuple[int, ...]:
    try:
        tiers = tuple(int(t) for t in value.split(",") if t.strip())
    except ValueError:
        raise CliError(f"--tiers takes comma-separated tiers, got {value!r}") from None
    if not tiers or any(t not in TIERS for t in tiers):
        raise CliError(f"--tiers must be among {', '.join(map(str, TIERS))}, got {value!r}")
    return tiers


def tiers_option(default: tuple[int, ...]):
    """--tiers "1,2,3" -> (1, 2, 3), each a sampler tier."""
    return click.option("--tiers", default=",".join(map(str, default)), show_default=True, callback=parse_tiers)


def length_options(command):
    """--length and --note-length (seconds), for every command that renders presets."""
    seconds = click.FloatRange(min=0, min_open=True)
    command = click.option("--note-length", type=seconds, default=RenderConfig.note_length, show_default=True,
                           help="Seconds the key is held.")(command)
    return click.option("--length", type=seconds, default=RenderConfig.render_length, show_default=True,
                        help="Seconds of audio per render.")(command)


def parse_shard(ctx, param, value: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected i/N (e.g. 0/4), got {value!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise click.BadParameter(f"need 0 <= i < N, got {value}")
    return i, n


def shard_option(*, help: str):
    """--shard i/N -> (i, N); the default, GenerateConfig's (0, 1), is the whole job in one shard."""
    return click.option("--shard", default="{}/{}".format(*GenerateConfig.shard), show_default=True,
                        callback=parse_shard, help=help)


no_audio_option = click.option("--no-audio", is_flag=True, help="Store mels and labels only (no 16-bit PCM audio).")
quiet_option = click.option("--quiet", is_flag=True, help="No progress bar.")
