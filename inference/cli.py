"""`python -m inference`: commands arrive with the inference pipeline (`infer`, `demo`, `benchmark`)."""

import click

from datagen.console import setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Turn a recorded synth note into a Vital preset."""
    setup_logging(verbose)
