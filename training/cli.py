"""`python -m training`: train (also under torchrun), evaluate, export (a slim checkpoint to ship).

Heavy imports happen inside commands."""

from __future__ import annotations

from pathlib import Path

import click

from datagen.console import CliError, ConfigError, Group, setup_logging
from training.train import CONTINUOUS_ERRORS, PRECISIONS


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Train and evaluate the preset estimator."""
    setup_logging(verbose)


def _default(name: str):
    """A TrainConfig field's default: the CLI shows and uses it, and it is declared once, there."""
    import dataclasses

    from training.train import TrainConfig

    return {f.name: f.default for f in dataclasses.fields(TrainConfig)}[name]


@main.command()
@click.option("-d", "--data", "data", multiple=True, required=True, type=click.Path(path_type=Path),
              help="HDF5 data set (repeat for shard files).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option("--epochs", type=int, default=_default("epochs"), show_default=True)
@click.option("--batch-size", type=int, default=_default("batch_size"), show_default=True)
@click.option("--lr", type=float, default=_default("lr"), show_default=True)
@click.option("--weight-decay", type=float, default=_default("weight_decay"), show_default=True)
@click.option("--warmup-epochs", type=float, default=_default("warmup_epochs"), show_default=True)
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=_default("label_smoothing"),
              show_default=True)
@click.option("--weight-wavetable", type=float, default=_default("weight_wavetable"), show_default=True,
              help="Loss weight of the wavetable head (0 leaves it untrained).")
@click.option("--weight-modulation", type=float, default=_default("weight_modulation"), show_default=True,
              help="Loss weight of the modulation head (0 leaves it untrained).")
@click.option("--gradient-accumulation-steps", type=int, default=_default("gradient_accumulation_steps"),
              show_default=True)
@click.option("--early-stopping-patience", type=int, default=_default("early_stopping_patience"), show_default=True,
              help="0 disables it.")
@click.option("--num-workers", type=int, default=_default("num_workers"), show_default=True,
              help="DataLoader worker processes.")
@click.option("--device", default=None, help="cuda, cuda:1, cpu (default: the best available).")
@click.option("--seed", type=int, default=_default("seed"), show_default=True)
@click.option("--no-spec-augment", is_flag=True, help="Train on clean mels.")
@click.option("--pretrained", type=click.Path(path_type=Path), default=None,
              help="Local torchvision ResNet-18 ImageNet state dict (never downloaded; default: random init).")
@click.option("--init-from", type=click.Path(path_type=Path), default=None,
              help="Start from this checkpoint's weights (fine-tune a run or the shipped model on new data).")
@click.option("--freeze-stages", type=click.IntRange(0, 4), default=_default("freeze_stages"), show_default=True)
@click.option("--max-batches-per-epoch", type=int, default=None, help="Cap batches per epoch (smoke runs).")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT/latest.pt.")
@click.option("--wandb", is_flag=True, help="Also log to Weights & Biases (offline mode works).")
@click.option("--precision", type=click.Choice(PRECISIONS), default=_default("precision"), show_default=True,
              help="bf16 autocast or float32; auto: bf16 on CUDA, float32 on a CPU.")
@click.option("--no-note", is_flag=True,
              help="A model that does not hear the played MIDI note (as every model before 2026-12-03).")
@click.option("--continuous-error", type=click.Choice(CONTINUOUS_ERRORS), default=_default("continuous_error"),
              show_default=True, help="The continuous head's error: absolute (l1) or squared (l2).")
def train(data, output, epochs, batch_size, lr, weight_decay, warmup_epochs, label_smoothing, weight_wavetable,
          weight_modulation, gradient_accumulation_steps, early_stopping_patience, num_workers, device, seed,
          no_spec_augment, pretrained, init_from, freeze_stages, max_batches_per_epoch, resume, wandb, precision,
          no_note, continuous_error):
    """Fit the model on data sets from `python -m datagen generate`."""
    from datagen.dataset import DatasetError
    from datagen.wavetables import WavetableError
    from training.checkpoint import CheckpointError
    from training.model import BackboneError
    from training.train import TrainConfig, train as run

    try:
        config = TrainConfig(
            data=tuple(str(d) for d in data), output=str(output), epochs=epochs, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, warmup_epochs=warmup_epochs, label_smoothing=label_smoothing,
            weight_wavetable=weight_wavetable, weight_modulation=weight_modulation,
            gradient_accumulation_steps=gradient_accumulation_steps,
            early_stopping_patience=early_stopping_patience, num_workers=num_workers, device=device, seed=seed,
            spec_augment=not no_spec_augment, pretrained=str(pretrained) if pretrained else None,
            init_from=str(init_from) if init_from else None,
            freeze_stages=freeze_stages, max_batches_per_epoch=max_batches_per_epoch, resume=resume, wandb=wandb,
            precision=precision, hear_note=not no_note, continuous_error=continuous_error)
        result = run(config)
    except (ConfigError, DatasetError, WavetableError, CheckpointError, BackboneError, FileNotFoundError) as e:
        raise CliError(str(e).splitlines()[0]) from None
    click.echo(f"{result['output']}: {result['epochs_run']} epochs, best val loss {result['best_val_loss']:.4f} "
               f"(epoch {result['best_epoch']})")


@main.command()
@click.option("-c", "--checkpoint", type=click.Path(path_type=Path), required=True, help="best.pt / latest.pt.")
@click.option("-d", "--data", "data", multiple=True, required=True, type=click.Path(path_type=Path),
              help="HDF5 data set (repeat for shard files).")
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True,
              help="Rows to evaluate; all = every row whatever its split.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="Folder for report.json and spectrograms.png.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--n-render", type=int, default=16, show_default=True,
              help="Items whose predictions are rendered for the spectral distance (0 disables).")
@click.option("--device", default=None, help="cuda, cuda:1, cpu (default: the best available).")
@click.option("--seed", type=int, default=0, show_default=True, help="Chooses the rendered items.")
@click.option("--max-items", type=int, default=None, help="Evaluate only the first N items of the split.")
def evaluate(checkpoint, data, split, output, batch_size, n_render, device, seed, max_items):
    """Score a checkpoint on a data set split against a predict-the-mean baseline."""
    from datagen.dataset import DatasetError
    from datagen.wavetables import WavetableError
    from training.checkpoint import CheckpointError
    from training.evaluate import EvaluateConfig, evaluate as run
    from training.report import write_report

    if output.exists() and not output.is_dir():
        raise CliError(f"{output}: exists and is not a folder")
    try:
        config = EvaluateConfig(checkpoint=str(checkpoint), data=tuple(str(d) for d in data), split=split,
                                batch_size=batch_size, device=device, n_render=n_render, seed=seed,
                                max_items=max_items)
        report = run(config)
        paths = write_report(report, output)
    except (ConfigError, DatasetError, WavetableError, CheckpointError, OSError) as e:
        raise CliError(str(e).splitlines()[0]) from None
    fmt = lambda x, spec=".4f": "n/a" if x is None else format(x, spec)  # noqa: E731
    base, spectral = report["baseline"], report["spectral_distance"]
    click.echo(f"{report['n_items']} items ({split}): continuous MSE {fmt(report['continuous_mse'])} "
               f"(baseline {fmt(base['continuous_mse'])}), MAE {fmt(report['continuous_mae'])} "
               f"(baseline {fmt(base['continuous_mae'])})")
    click.echo(f"categorical accuracy {fmt(report['categorical_accuracy'], '.3f')} "
               f"(baseline {fmt(base['categorical_accuracy'], '.3f')}), wavetable "
               f"{fmt(report['wavetable_accuracy'], '.3f')} (baseline {fmt(base['wavetable_accuracy'], '.3f')})")
    click.echo(f"modulation precision {fmt(report['modulation_precision'], '.3f')}, recall "
               f"{fmt(report['modulation_recall'], '.3f')}, amount MAE {fmt(report['modulation_amount_mae'])}")
    if spectral["n_render"]:
        click.echo(f"spectral distance {fmt(spectral['mean'], '.3f')} (init preset {fmt(spectral['init_mean'], '.3f')})"
                   f" over {spectral['n_render'] - spectral['n_failed']} of {spectral['n_render']} renders")
    click.echo("report: " + ", ".join(str(p) for p in paths.values()))


@main.command("export")
@click.option("-c", "--checkpoint", type=click.Path(path_type=Path), required=True, help="A run's best.pt.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The .pt to ship.")
@click.option("--full-precision", is_flag=True, help="Keep float32 weights (default: float16, half the size).")
def export(checkpoint, output, full_precision):
    """Strip a checkpoint for inference: no optimizer or trainer state, float16 weights."""
    from datagen.console import check_writable
    from training import checkpoint as ckpt_io

    check_writable(output)
    try:
        ckpt = ckpt_io.load(checkpoint)
    except ckpt_io.CheckpointError as e:
        raise CliError(str(e)) from None
    ckpt_io.save(output, ckpt_io.slim(ckpt, half=not full_precision))
    click.echo(f"{output}: {output.stat().st_size / 2**20:.1f} MB (from {checkpoint.stat().st_size / 2**20:.1f} MB)")
