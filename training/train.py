"""The trainer: `python -m training train` (one process) or `torchrun --nproc_per_node=N -m training train`.

AdamW (fused), linear warm-up then cosine decay stepped per optimizer update from the first one, gradient
accumulation whose last partial window is scaled by its own size, gradient clipping, bf16 autocast (`precision`:
on CUDA by default; on a CPU only when asked: research/benchmarks.md, "Training throughput"), validation in
float32, SpecAugment, seeded shuffling per epoch (so a resumed run sees the same batches), `best.pt` and
`latest.pt` written atomically every epoch, `--resume` from `latest.pt`, early stopping. Under torchrun: DDP
(NCCL on GPU, gloo on CPU), DistributedSampler, validation sums all-reduced so metrics describe the whole
validation set, and only rank 0 logs and saves (the unwrapped module).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import resource
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from datagen.console import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[str, ...]  # HDF5 files (one, shards, or a merged virtual set)
    output: str  # run folder: best.pt, latest.pt, log.jsonl, loss.png
    epochs: int = 200
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    weight_wavetable: float = 1.0  # loss weight of the wavetable head (continuous and categorical stay at 1)
    weight_modulation: float = 1.0  # loss weight of the modulation head, after its warm-up ramp
    gradient_accumulation_steps: int = 1
    early_stopping_patience: int = 15
    num_workers: int = 0
    device: str | None = None  # None: cuda if available, else cpu
    seed: int = 0
    clip_grad: float = 1.0
    spec_augment: bool = True
    pretrained: str | None = None  # local torchvision resnet18 state dict; never downloaded
    init_from: str | None = None  # a checkpoint whose weights start the run (fine-tuning: fresh optimizer, schedule)
    freeze_stages: int = 0
    max_batches_per_epoch: int | None = None  # smoke runs and tests
    resume: bool = False
    wandb: bool = False
    precision: str = "auto"  # "bf16" autocast, "fp32", or "auto": bf16 on CUDA, float32 on a CPU
    hear_note: bool = True  # the model hears the played MIDI note (training.model: ModelConfig.band_octaves)
    continuous_error: str = "l1"  # the continuous head's error: "l1" (absolute) or "l2" (squared); LossConfig

    def __post_init__(self):
        for name in ("epochs", "batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.num_workers < 0 or self.early_stopping_patience < 0 or self.warmup_epochs < 0:
            raise ConfigError("num-workers, early-stopping-patience and warmup-epochs must be >= 0")
        if self.weight_wavetable < 0 or self.weight_modulation < 0:
            raise ConfigError("weight-wavetable and weight-modulation must be >= 0")
        if not self.data:
            raise ConfigError("give at least one data set file")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.init_from and self.pretrained:
            raise ConfigError("give --init-from (a checkpoint) or --pretrained (a backbone), not both")
        if self.continuous_error not in CONTINUOUS_ERRORS:
            raise ConfigError(f"continuous-error must be one of {', '.join(CONTINUOUS_ERRORS)}, "
                              f"got {self.continuous_error!r}")


PRECISIONS = ("auto", "bf16", "fp32")
CONTINUOUS_ERRORS = ("l1", "l2")  # training.heads.continuous.loss


def autocast_dtype(precision: str, device):
    """torch.bfloat16 when `precision` (TrainConfig.precision) asks for bf16 autocast on `device`, else None
    (float32). "auto": bf16 on CUDA, float32 on a CPU, where bf16 is fast only with native support (an
    AVX-512 BF16 CPU, batch 64: ~100 vs ~75 samples/s; emulated on an AVX2 one: 1.9 vs 31, research/benchmarks.md);
    ask for it there (`native_cpu_bf16` tells, and training warns when it is emulated)."""
    import torch

    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's check: AVX-512 BF16 or AMX); where it does not, torch
    emulates bf16 autocast (1.9 vs 31 samples/s for float32 on an AVX2 EPYC, research/benchmarks.md)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a private op: absent in some builds, so assume emulation
        return False


def _distributed():
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def train(config: TrainConfig, *, show_progress: bool = True) -> dict:
    """Train; returns {"epochs_run", "best_val_loss", "best_epoch", "history", "output"}."""
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler
    from tqdm import tqdm

    from datagen.registry import load_registry
    from training.data import collate
    from training.report import plot_history
    from training.schedule import accumulation_windows, lr_factor

    rank, world, local_rank = _distributed()
    device = _device(config, world=world, local_rank=local_rank)
    main = rank == 0
    out = Path(config.output)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed + rank)

    registry = load_registry()
    train_set, val_set = _datasets(config)
    info = train_set.info
    model, model_config, n_tables = _model(config, registry, info, device)
    baseline = _baseline(train_set, model_config, registry=registry, n_wavetables=n_tables)
    loss_fn = _loss(registry, model_config, train_set, label_smoothing=config.label_smoothing,
                    weight_wavetable=config.weight_wavetable, weight_modulation=config.weight_modulation,
                    continuous_error=config.continuous_error).to(device)

    collate_fn = partial(collate, n_sources=len(registry.sources), n_destinations=len(registry.destinations))
    train_sampler = DistributedSampler(train_set, shuffle=True, seed=config.seed) if world > 1 else None
    val_sampler = list(range(rank, len(val_set), world))  # no padding: the all-reduced sums count each row once
    loader_args = dict(batch_size=config.batch_size, collate_fn=collate_fn, num_workers=config.num_workers,
                       persistent_workers=config.num_workers > 0, pin_memory=device.type == "cuda")
    val_loader = DataLoader(val_set, sampler=val_sampler, shuffle=False, **loader_args)
    n_batches = math.ceil(len(train_set) / world / config.batch_size)
    if config.max_batches_per_epoch:
        n_batches = min(n_batches, config.max_batches_per_epoch)
    windows = accumulation_windows(n_batches, config.gradient_accumulation_steps)
    total_steps = len(windows) * config.epochs
    warmup_steps = int(round(config.warmup_epochs * len(windows)))

    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel for all ~380 parameter tensors (the per-tensor loop was ~10% of a CPU step)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay,
                                  fused=device.type in ("cpu", "cuda"))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup_steps=warmup_steps, total_steps=total_steps))
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None) \
        if world > 1 else model
    state = _resume(config, out / "latest.pt", model=model, optimizer=optimizer, scheduler=scheduler, rank=rank)
    run_log = _wandb(config, out) if config.wandb and main else None
    dtype = autocast_dtype(config.precision, device)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    if main:
        log.info("training on %s in %s", device, "bf16 autocast" if dtype is not None else "float32")
        if dtype is not None and device.type == "cpu" and not native_cpu_bf16():
            log.warning("this CPU has no native bf16 (%s): bf16 autocast is emulated, ~16x slower than float32 "
                        "on the project's AVX2 machine; use --precision fp32", torch.backends.cpu.get_cpu_capability())

    for epoch in range(state["epoch"] + 1, config.epochs):
        sampler = train_sampler
        if sampler is not None:
            sampler.set_epoch(epoch)
        else:  # a generator seeded per epoch: the same batches whether or not the run was resumed
            sampler = torch.utils.data.RandomSampler(train_set, generator=torch.Generator().manual_seed(
                config.seed * 100003 + epoch))
        loader = DataLoader(train_set, sampler=sampler, **loader_args)
        aug = torch.Generator().manual_seed(config.seed * 7919 + epoch * 31 + rank)
        bar = tqdm(total=n_batches, desc=f"epoch {epoch}", disable=not (main and show_progress), dynamic_ncols=True)
        stats = _train_epoch(net, loss_fn, loader, optimizer=optimizer, scheduler=scheduler, params=params,
                             windows=windows, epoch=epoch, device=device, world=world, autocast=autocast, aug=aug,
                             config=config, bar=bar)
        bar.close()
        state["step"] += len(windows)
        val = _validate(net, loss_fn, val_loader, device, world)
        row = _epoch_row(epoch, state["step"], lr=scheduler.get_last_lr()[0], stats=stats, val=val, world=world,
                         device=device)
        improved = _update_state(state, epoch, row)
        ckpt = _payload(model=model, model_config=model_config, info=info, registry=registry, config=config,
                        metrics=row, loss_fn=loss_fn, baseline=baseline, optimizer=optimizer, scheduler=scheduler,
                        state=state, world=world)
        if main:
            _save_epoch(out, ckpt, row, improved=improved, run_log=run_log)
        if state["stale"] >= config.early_stopping_patience > 0:
            if main:
                log.info("early stopping: no improvement for %d epochs", state["stale"])
            break
    if main:
        plot_history(state["history"], out / "loss.png")
        if run_log is not None:
            run_log.finish()
    if world > 1:
        dist.destroy_process_group()
    return {"epochs_run": len(state["history"]), "best_val_loss": state["best_val_loss"],
            "best_epoch": state["best_epoch"], "history": state["history"], "output": str(out)}


def _device(config: TrainConfig, *, world: int, local_rank: int):
    """The device of this rank (config.device, else CUDA when there is one); joins the process group under
    torchrun (NCCL on GPUs, gloo on CPUs)."""
    import torch
    import torch.distributed as dist

    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def _datasets(config: TrainConfig) -> tuple:
    """(train set, validation set): the validation split, or the training split (with a warning) if empty."""
    from datagen.dataset import DatasetError
    from training.data import PresetDataset

    train_set = PresetDataset(list(config.data), split="train")
    try:
        return train_set, PresetDataset(list(config.data), split="val")
    except DatasetError:
        log.warning("the data set has no validation rows; validating on the training split")
        return train_set, train_set


def _model(config: TrainConfig, registry, info, device) -> tuple:
    """(model on `device`, its ModelConfig, wavetable class count) for the data's features and catalog."""
    from datagen.features import FeatureConfig
    from datagen.wavetables import Catalog
    from training.model import PresetEstimator, band_octaves, load_pretrained_backbone, model_config_for

    n_tables = len(Catalog.from_json(info.wavetable_catalog)) + 1  # class 0: the init preset's table
    features = FeatureConfig.from_json(info.feature_config)
    model_config = model_config_for(registry, n_wavetables=n_tables, freeze_stages=config.freeze_stages,
                                    n_mels=features.n_mels, n_frames=features.n_frames,
                                    band_octaves=band_octaves(features) if config.hear_note else ())
    model = PresetEstimator(model_config)
    if config.pretrained:
        load_pretrained_backbone(model, config.pretrained)
    if config.init_from:
        _init_from(model, config.init_from, model_config=model_config, catalog=info.wavetable_catalog)
    return model.to(device), model_config, n_tables


def _init_from(model, path: str, *, model_config, catalog: str) -> None:
    """Load a checkpoint's weights (a run's or a slim exported one) into `model`, strictly. CheckpointError
    when its model differs from the one this data builds or its wavetable classes mean other tables."""
    from datagen.wavetables import Catalog
    from training import checkpoint
    from training.model import ModelConfig

    ckpt = checkpoint.load(Path(path))
    theirs = ModelConfig.from_dict(ckpt["model_config"]) if "model_config" in ckpt else None

    def same(a, b) -> bool:  # band_octaves are floats computed on another machine: equal up to rounding
        if isinstance(a, tuple) and a and isinstance(a[0], float):
            return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) <= 1e-9
        return a == b

    differ = [f.name for f in dataclasses.fields(model_config)
              if theirs is None or not same(getattr(theirs, f.name), getattr(model_config, f.name))]
    if differ:
        raise checkpoint.CheckpointError(f"{path}: its model differs from the one this data set builds "
                                         f"({', '.join(differ)}); train from scratch instead")
    if checkpoint.contents(ckpt, Path(path)).catalog.fingerprint != Catalog.from_json(catalog).fingerprint:
        raise checkpoint.CheckpointError(f"{path}: its wavetable classes are another catalog's than this data set's")
    checkpoint.load_weights(model, ckpt, Path(path))


def _resume(config: TrainConfig, latest: Path, *, model, optimizer, scheduler, rank: int) -> dict:
    """The run's state: loaded with the model, optimizer, scheduler and RNG from `latest` when resuming."""
    import torch

    from training import checkpoint

    state = {"epoch": -1, "step": 0, "best_val_loss": float("inf"), "best_epoch": -1, "stale": 0, "history": []}
    if config.resume and latest.exists():
        ckpt = checkpoint.load(latest)
        model.load_state_dict(ckpt["model"], strict=True)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"][rank] if rank < len(ckpt["rng"]["torch"]) else ckpt["rng"]["torch"][0])
        state = ckpt["state"]
        if rank == 0:
            log.info("resuming after epoch %d (step %d)", state["epoch"], state["step"])
    elif config.resume and rank == 0:
        log.info("no %s yet: starting a new run", latest)
    return state


def _wandb(config: TrainConfig, out: Path):
    """An optional wandb run: offline unless WANDB_MODE says otherwise, never required."""
    import wandb

    return wandb.init(project="vital-match", dir=str(out), config=dataclasses.asdict(config),
                      mode=os.environ.get("WANDB_MODE", "offline"), resume="allow")


def _epoch_row(epoch: int, step: int, *, lr: float, stats: dict, val: dict, world: int, device) -> dict:
    """One line of log.jsonl: losses per sample, throughput, the data loader's share of the time, memory."""
    import torch

    sums, seen, wait, seconds = stats["sums"], stats["seen"], stats["wait"], stats["seconds"]
    return {"epoch": epoch, "step": step, "lr": lr,
            **{f"train/{k}": v / max(seen, 1) for k, v in sums.items()}, **{f"val/{k}": v for k, v in val.items()},
            "samples_per_s": seen * world / seconds, "data_wait_share": wait / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # this rank, Linux KiB
            "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0}


def _update_state(state: dict, epoch: int, row: dict) -> bool:
    """Record an epoch in the run's state; True when its validation loss is the best so far."""
    state["epoch"] = epoch
    state["history"].append(row)
    improved = row["val/loss"] < state["best_val_loss"]
    if improved:
        state.update(best_val_loss=row["val/loss"], best_epoch=epoch, stale=0)
    else:
        state["stale"] += 1
    return improved


def _save_epoch(out: Path, ckpt: dict, row: dict, *, improved: bool, run_log) -> None:
    """latest.pt (and best.pt when improved), written atomically; the epoch's line in log.jsonl."""
    from training import checkpoint

    checkpoint.save(out / "latest.pt", ckpt)
    if improved:
        checkpoint.save(out / "best.pt", ckpt)
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    if run_log is not None:
        run_log.log(row, step=row["step"])
    log.info("epoch %d: train loss %.4f, val loss %.4f, %.1f samples/s, data wait %.0f%%", row["epoch"],
             row["train/loss"], row["val/loss"], row["samples_per_s"], 100 * row["data_wait_share"])


def _train_epoch(net, loss_fn, loader, *, optimizer, scheduler, params, windows, epoch: int, device, world: int,
                 autocast, aug, config: TrainConfig, bar) -> dict:
    """One pass over `loader` in accumulation `windows` (one optimizer + scheduler step each, gradients clipped).
    Returns sums (loss part -> sum over rows), seen (rows), wait (s blocked on the loader), seconds (s)."""
    import torch

    from training.schedule import spec_augment

    net.train()
    t0, seen, wait = time.perf_counter(), 0, 0.0
    sums: dict[str, float] = {}
    batches = iter(loader)
    for w, size in enumerate(windows):
        optimizer.zero_grad(set_to_none=True)
        for k in range(size):
            tw = time.perf_counter()
            batch = next(batches)
            wait += time.perf_counter() - tw
            batch = {key: v.to(device, non_blocking=True) for key, v in batch.items()}
            mel = spec_augment(batch["mel"], generator=aug) if config.spec_augment else batch["mel"]
            sync = k == size - 1 or world == 1
            with (nullcontext() if sync else net.no_sync()), autocast:
                parts = loss_fn(_float(net(mel, batch["midi_note"])), batch, epoch=epoch + w / len(windows))
                (parts["loss"] / size).backward()
            n = len(batch["midi_note"])
            seen += n
            for key, v in parts.items():
                sums[key] = sums.get(key, 0.0) + float(v.detach()) * n
            bar.update(1)
            bar.set_postfix(loss=f"{float(parts['loss'].detach()):.4f}", samples_s=f"{seen / (time.perf_counter() - t0):.1f}")
        torch.nn.utils.clip_grad_norm_(params, config.clip_grad)
        optimizer.step()
        scheduler.step()
    return {"sums": sums, "seen": seen, "wait": wait, "seconds": time.perf_counter() - t0}


def _payload(*, model, model_config, info, registry, config: TrainConfig, metrics: dict, loss_fn, baseline: dict,
             optimizer, scheduler, state: dict, world: int) -> dict:
    """The checkpoint: everything to rebuild and use the model (training.checkpoint), plus what resuming needs
    (optimizer, scheduler, every rank's RNG state, the trainer's state)."""
    import torch
    import torch.distributed as dist

    rng = [torch.get_rng_state()]
    if world > 1:
        gathered = [torch.empty_like(rng[0]) for _ in range(world)]
        dist.all_gather_object(gathered, rng[0])
        rng = gathered
    return {
        "model": model.state_dict(), "model_config": model_config.to_dict(),
        "feature_config": info.feature_config, "render_config": info.render_config,  # as the data set has them
        "registry": registry.describe(),
        "registry_fingerprint": registry.fingerprint, "sources": list(registry.sources),
        "destinations": list(registry.destinations), "wavetable_catalog": info.wavetable_catalog,
        "tier": info.tier, "sample_rate": json.loads(info.feature_config)["sample_rate"],
        "train_config": dataclasses.asdict(config), "metrics": metrics,
        "importance": loss_fn.importance.cpu().tolist(),  # per continuous parameter, as the loss used it
        "loss_config": dataclasses.asdict(loss_fn.config),  # decoding reads the presence pos_weight
        "baseline": baseline,  # the constant the model must beat (training.baseline), decodable at inference
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": {"torch": rng},
        "state": state,
    }


def _baseline(dataset, model_config, *, registry, n_wavetables: int) -> dict:
    """The train split's predict-the-mean constants (`training.baseline`, JSON-able) for the checkpoint: one per
    head with a baseline, and the number of rows they were fitted on."""
    from training.baseline import fit_baseline
    from training.losses import build_mask_spec

    fit = fit_baseline(dataset.paths, spec=build_mask_spec(registry, tier=dataset.info.tier),
                       predicted_categorical=model_config.predicted_categorical, n_wavetables=n_wavetables,
                       split="train")
    rows = fit.pop("n_rows")
    return {**fit, "rows": rows}


def _loss(registry, model_config, dataset, *, label_smoothing: float, weight_wavetable: float = 1.0,
          weight_modulation: float = 1.0, continuous_error: str):
    """The training loss for a data set: masks from its tier, importance weights from its first file."""
    import torch

    from training.losses import LossConfig, PresetLoss, build_mask_spec

    importance = dataset.importance()
    return PresetLoss(spec=build_mask_spec(registry, tier=dataset.info.tier),
                      predicted_categorical=model_config.predicted_categorical,
                      importance=None if importance is None else torch.from_numpy(importance),
                      config=LossConfig(label_smoothing=label_smoothing, weight_wavetable=weight_wavetable,
                                        weight_modulation=weight_modulation, continuous_error=continuous_error))


def validate(checkpoint_path: Path, data: list[str], *, split: str = "val", batch_size: int = 32) -> dict:
    """The loss parts a checkpoint scores on a split, in one process: what the trainer logs as `val/*`."""
    import torch
    from torch.utils.data import DataLoader

    from datagen.registry import load_registry
    from training import checkpoint
    from training.data import PresetDataset, collate

    ckpt = checkpoint.load(checkpoint_path)
    registry = load_registry()
    model = checkpoint.build_model(ckpt, checkpoint_path)
    model_config = model.config
    dataset = PresetDataset(list(data), split=split)
    trained = ckpt["train_config"]
    loss_fn = _loss(registry, model_config, dataset, label_smoothing=trained["label_smoothing"],
                    weight_wavetable=trained.get("weight_wavetable", 1.0),  # checkpoints from before the option
                    weight_modulation=trained.get("weight_modulation", 1.0),
                    continuous_error=checkpoint.contents(ckpt, checkpoint_path).loss.continuous_error)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=partial(
        collate, n_sources=len(registry.sources), n_destinations=len(registry.destinations)))
    return _validate(model, loss_fn, loader, torch.device("cpu"), 1)


def _float(outputs: dict) -> dict:
    """Model outputs in float32 (the loss is computed in full precision under autocast)."""
    f = lambda x: [t.float() for t in x] if isinstance(x, list) else x.float()  # noqa: E731
    return {k: f(v) for k, v in outputs.items()}


def _validate(net, loss_fn, loader, device, world: int) -> dict:
    """Mean over validation rows of every loss part, each row scored alone (the loss normalises by per-batch
    mask sums, so scoring whole batches would make the number depend on how rows are batched and sharded);
    sums all-reduced across ranks, so the result describes the whole validation set. In float32 whatever the
    training precision: val/* (and the choice of best.pt) mean the same for every run and for `validate`."""
    import torch
    import torch.distributed as dist

    net.eval()
    keys, totals = None, None
    with torch.no_grad():
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            # full modulation weight, so validation losses compare across the warm-up epochs
            outputs = _float(net(batch["mel"], batch["midi_note"]))
            for i in range(len(batch["midi_note"])):
                row = lambda x: [t[i:i + 1] for t in x] if isinstance(x, list) else x[i:i + 1]  # noqa: E731
                parts = loss_fn({k: row(v) for k, v in outputs.items()}, {k: v[i:i + 1] for k, v in batch.items()},
                                epoch=math.inf)
                if keys is None:
                    keys = sorted(parts)
                    totals = torch.zeros(len(keys) + 1, dtype=torch.float64, device=device)
                totals[:-1] += torch.stack([parts[k].double() for k in keys])  # stays on the device: no sync
                totals[-1] += 1
    if world > 1:
        dist.all_reduce(totals)
    return {k: float(totals[i] / totals[-1]) for i, k in enumerate(keys)}
