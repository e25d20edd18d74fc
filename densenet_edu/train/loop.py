"""The training loop, as named phases: set-up, resume, epoch, evaluate, checkpoint, log.

Optimisation is the paper's (Section 4.2): SGD with Nesterov momentum 0.9, no dampening,
weight decay 1e-4, and a learning rate divided by 10 at 50% and 75% of the epochs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from densenet_edu.data import DatasetSplits, load_dataset
from densenet_edu.errors import CheckpointError
from densenet_edu.model import DenseNet
from densenet_edu.progress import progress_bar
from densenet_edu.train import checkpoint as ckpt
from densenet_edu.train.checkpoint import save_checkpoint, write_log
from densenet_edu.train.config import TrainConfig
from densenet_edu.train.runtime import (
    deterministic,
    distributed,
    move_optimizer_state,
    seed_everything,
    world_size,
)
from densenet_edu.train.steps import TrainStep, evaluate_sums, reduce_mean

__all__ = ["TrainResult", "build_model", "milestone_epochs", "train"]

EpochCallback = Callable[[dict[str, float]], None]


@dataclass
class TrainResult:
    """What :func:`train` returns: the per-epoch metrics and the trained model (eval mode)."""

    history: list[dict[str, float]]
    model: nn.Module
    checkpoint_path: Path
    log_path: Path

    @property
    def final(self) -> dict[str, float]:
        """Metrics of the last epoch."""
        return self.history[-1]


def build_model(config: TrainConfig, num_classes: int, in_channels: int) -> DenseNet:
    """The CIFAR-style DenseNet that ``config`` describes."""
    return DenseNet(config.model_config(num_classes, in_channels))


def milestone_epochs(epochs: int, fractions: Sequence[float]) -> list[int]:
    """The 0-based epochs in which the learning rate drops: ceil(f * epochs) for each f.

    Epoch t (counting from 0) trains with ``lr * gamma ** k``, where k is the number of
    fractions f with ``t >= f * epochs``: the paper's "divided by 10 at 50% and 75% of
    the total number of training epochs". For 300 epochs and (0.5, 0.75) that is
    [150, 225]; for 6 epochs [3, 5], since 4.5 epochs is not a whole one. The list is
    what ``MultiStepLR`` takes (stepped once per epoch); a repeated entry drops twice.
    """
    # round(..., 9) first: 0.07 * 100 is 7.000000000000001 in floating point, not 7.
    return sorted(math.ceil(round(f * epochs, 9)) for f in fractions)


def train(
    config: TrainConfig, model: nn.Module | None = None, on_epoch_end: EpochCallback | None = None
) -> TrainResult:
    """Train ``model`` (by default the DenseNet ``config`` describes) and return its metrics.

    Args:
        config: the run's settings (see :class:`TrainConfig`).
        model: any classifier taking (N, C, H, W) images to (N, classes) logits; built
            from ``config`` when omitted.
        on_epoch_end: called with each epoch's metrics after the checkpoint and the log
            are written.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this; the model is wrapped
    in DistributedDataParallel, each process sees its share of every batch, and only
    rank 0 prints, logs and saves.

    Raises:
        ValueError: a nonsensical setting or an unwritable ``out_dir``;
            :class:`~densenet_edu.errors.DataError` for missing data;
            :class:`~densenet_edu.errors.CheckpointError` for a checkpoint that is missing
            (``resume=True``), already there (without ``resume``), unreadable, from another
            model or recipe, or that could not be written. None of these touch the files
            already in ``config.out_dir``.
    """
    config.validate()
    processes = world_size()
    with distributed(processes, config.device, config.deterministic) as (rank, device):
        with deterministic(config.deterministic, device):
            run, step, loaders = _set_up(config, model, rank, processes, device)
            for epoch in range(run.start_epoch, config.epochs):
                record = _epoch(run, step, loaders, epoch)
                _checkpoint(run, record)
                _log(run, record)
                if on_epoch_end is not None:
                    on_epoch_end(record)
            run.model.eval()
            return TrainResult(run.history, run.model, run.ckpt_path, run.log_path)


@dataclass
class _Loaders:
    """Batches of this process: its share of the shuffled training set, and of the test set."""

    sampler: DistributedSampler
    seeds: torch.Generator  # reseeded every epoch: the workers' augmentations
    train: DataLoader
    test: DataLoader


@dataclass
class _Run:
    """What one process carries from phase to phase."""

    config: TrainConfig
    rank: int
    processes: int
    device: torch.device
    ckpt_path: Path
    log_path: Path
    model: nn.Module  # the bare model: checkpoints hold its weights
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    scaler: torch.amp.GradScaler
    start_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


# --- set-up --------------------------------------------------------------------------------


def _set_up(
    config: TrainConfig, model: nn.Module | None, rank: int, processes: int, device: torch.device
) -> tuple[_Run, TrainStep, _Loaders]:
    """Check everything that can be checked before an epoch, then build the run."""
    out_dir = Path(config.out_dir)
    ckpt_path, log_path = out_dir / ckpt.CHECKPOINT_NAME, out_dir / ckpt.LOG_NAME
    resume_from = _checkpoint_to_resume(config, ckpt_path)
    _check_runtime(config, processes, device)
    ckpt.check_out_dir(out_dir)
    data = _load_data(config, rank, processes)
    seed_everything(config.seed)
    if model is None:
        model = build_model(config, data.num_classes, data.in_channels)
    if rank == 0:
        ckpt.check_free_space(out_dir, model)
        _make_out_dir(out_dir)
    optimizer, scheduler, scaler = _optimiser(config, model)
    run = _Run(config, rank, processes, device, ckpt_path, log_path, model, optimizer, scheduler,
               scaler)  # fmt: skip
    _resume(run, resume_from)
    return run, _place(run), _loaders(run, data)


def _check_runtime(config: TrainConfig, processes: int, device: torch.device) -> None:
    if config.batch_size % processes:
        raise ValueError(
            f"batch_size {config.batch_size} (the global batch) must be divisible by the "
            f"number of processes, {processes}"
        )
    if config.amp == "fp16" and device.type != "cuda":
        raise ValueError("amp='fp16' needs a CUDA GPU; use amp='bf16' on a CPU")


def _checkpoint_to_resume(config: TrainConfig, ckpt_path: Path) -> Path | None:
    """The checkpoint this run continues from (None: a new run); refuses to overwrite one."""
    resume = config.resume
    if resume is False or (resume == "auto" and not ckpt_path.exists()):
        if ckpt_path.exists():
            raise CheckpointError(
                f"{ckpt_path} already exists; continue that run with resume=True (or "
                "resume='auto'), or choose another out_dir (checkpoints are never overwritten)"
            )
        return None
    if resume is True or resume == "auto":
        if not ckpt_path.is_file():
            raise CheckpointError(f"resume=True: no checkpoint at {ckpt_path}")
        return ckpt_path
    source = Path(resume)
    if not source.is_file():
        raise CheckpointError(f"resume={str(resume)!r}: no checkpoint at {source}")
    if ckpt_path.exists() and not ckpt_path.samefile(source):
        raise CheckpointError(
            f"{ckpt_path} already exists and is not {source}; choose another out_dir "
            "(checkpoints are never overwritten)"
        )
    return source


def _make_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create out_dir {out_dir}: {e.strerror or e}") from e
    ckpt.remove_stale_temporaries(out_dir)  # left by a run killed while writing


def _load_data(config: TrainConfig, rank: int, processes: int) -> DatasetSplits:
    # With several processes only rank 0 downloads; the others wait for it at a barrier.
    shared_download = config.download and processes > 1
    if shared_download and rank != 0:
        dist.barrier()
    data = load_dataset(
        config.dataset,
        config.data_dir,
        download=config.download and rank == 0,
        augment=config.augment,
        train_limit=config.train_limit,
        test_limit=config.test_limit,
        split_seed=config.split_seed,
        image_size=config.image_size,
    )
    if shared_download and rank == 0:
        dist.barrier()
    return data


def _optimiser(config: TrainConfig, model: nn.Module) -> tuple[Any, Any, Any]:
    """SGD with the paper's momentum, decay and step schedule, and an fp16 gradient scaler."""
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        dampening=0.0,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )
    milestones = milestone_epochs(config.epochs, config.milestones)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, config.gamma)
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp == "fp16")
    return optimizer, scheduler, scaler


def _resume(run: _Run, source: Path | None) -> None:
    """Load the checkpoint's states and history into the run (nothing for a new run)."""
    if source is None:
        if run.rank:
            torch.manual_seed(run.config.seed + run.rank)  # other augmentations per process
        return
    state = ckpt.load_checkpoint(source, run.model, run.config)
    ckpt.check_resumable(source, state)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    run.start_epoch, run.history = state["epoch"], list(state["history"])
    ckpt.set_rng_state(state["rng"], run.rank, run.processes)
    if run.rank == 0:
        ckpt.sync_log(run.log_path, run.history)


def _place(run: _Run) -> TrainStep:
    """Model and optimiser state on the device, DDP around the model for several processes."""
    c = run.config
    memory_format = torch.channels_last if c.channels_last else torch.contiguous_format
    run.model.to(device=run.device, memory_format=memory_format)
    move_optimizer_state(run.optimizer, run.device)
    net: nn.Module = run.model
    if run.processes > 1:
        ids = [run.device.index] if run.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(run.model, device_ids=ids)
    return TrainStep(net, run.optimizer, run.scaler, run.device, c.amp, memory_format)


def _loaders(run: _Run, data: DatasetSplits) -> _Loaders:
    c, processes = run.config, run.processes
    # The sampler shuffles with seed + epoch, so the data order of every epoch is fixed by
    # the seed alone: a resumed run replays exactly the batches it would have seen.
    sampler = DistributedSampler(
        data.train, num_replicas=processes, rank=run.rank, shuffle=True, seed=c.seed
    )
    seeds = torch.Generator()
    train_loader = DataLoader(
        data.train,
        batch_size=c.batch_size // processes,
        sampler=sampler,
        num_workers=c.num_workers,
        generator=seeds,  # seeds the worker processes' augmentations
        pin_memory=run.device.type == "cuda",
    )
    test_part = Subset(data.test, range(run.rank, len(data.test), processes))  # no padding
    test_loader = DataLoader(
        test_part, batch_size=max(256, c.batch_size), num_workers=c.num_workers
    )
    return _Loaders(sampler, seeds, train_loader, test_loader)


# --- one epoch -----------------------------------------------------------------------------


def _epoch(run: _Run, step: TrainStep, loaders: _Loaders, epoch: int) -> dict[str, float]:
    """Train one epoch, evaluate, step the schedule; returns the epoch's log record.

    With a progress bar the bar's final state is the epoch's log line (test metrics in
    its postfix), so a notebook shows one line per epoch, not a bar and a print.
    """
    c = run.config
    loaders.sampler.set_epoch(epoch)
    loaders.seeds.manual_seed(c.seed * 1_000_003 + epoch)
    lr = run.optimizer.param_groups[0]["lr"]
    t0 = time.perf_counter()
    bar = progress_bar(
        total=len(loaders.sampler) * run.processes,
        desc=f"epoch {epoch + 1}/{c.epochs}",
        unit="img",
        disable=not (run.rank == 0 and c.progress),
        leave=True,
    )
    with bar:
        train_loss, train_acc = _fit(step, loaders.train, run.processes, bar)
        test_sums = evaluate_sums(step.net, loaders.test, run.device, c.amp, step.memory_format)
        test_loss, test_acc = reduce_mean(test_sums, run.processes)
        bar.set_postfix(
            loss=f"{train_loss:.3f}", acc=f"{train_acc:.1%}", test_loss=f"{test_loss:.4f}",
            test_acc=f"{test_acc:.2%}", lr=f"{lr:g}", refresh=False,
        )  # fmt: skip
    run.scheduler.step()
    return {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "lr": lr,
        "seconds": time.perf_counter() - t0,
    }


def _fit(step: TrainStep, loader: DataLoader, processes: int, bar: Any) -> tuple[float, float]:
    """One pass over the training set; mean loss and accuracy over all processes."""
    step.net.train()
    sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n
    for images, labels in loader:
        loss_sum, correct, n = step(images, labels)
        sums += torch.tensor([loss_sum, correct, n], dtype=torch.float64)
        bar.update(n * processes)
        bar.set_postfix(
            loss=f"{sums[0] / sums[2]:.3f}", acc=f"{sums[1] / sums[2]:.1%}", refresh=False
        )
    return reduce_mean(sums, processes)


def _checkpoint(run: _Run, record: dict[str, float]) -> None:
    """Save the checkpoint, then the log: the log never holds an epoch the checkpoint lacks."""
    run.history.append(record)
    rng = ckpt.gather_rng_states(run.processes)  # a collective: every process takes part
    if run.rank:
        return
    state = {
        "format": ckpt.FORMAT,
        "epoch": record["epoch"],
        "model_config": ckpt.architecture(run.model),
        "param_shapes": ckpt.param_shapes(run.model),
        "recipe": ckpt.recipe(run.config),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": rng,
        "history": run.history,
    }
    save_checkpoint(state, run.ckpt_path)
    write_log(run.log_path, run.history)


def _log(run: _Run, record: dict[str, float]) -> None:
    """A plain line per epoch when there is no progress bar to carry it."""
    c = run.config
    if run.rank == 0 and c.verbose and not c.progress:
        print(
            f"epoch {record['epoch']}/{c.epochs}: test loss {record['test_loss']:.4f}, "
            f"test acc {record['test_acc']:.2%}, lr {record['lr']:g}, "
            f"{record['seconds']:.1f} s",
            flush=True,
        )
