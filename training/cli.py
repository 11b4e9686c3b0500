"""`python -m training`: commands arrive with the trainer (`train`, `evaluate`)."""

import click

from datagen.console import setup_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Train and evaluate the preset estimator."""
    setup_logging(verbose)
