"""Train a DenseNet: the paper's CIFAR recipe as a function and a command line.

Defaults follow Section 4.2 of the paper ("Training"): SGD with Nesterov momentum 0.9
(no dampening), weight decay 1e-4, batch size 64, learning rate 0.1 divided by 10 at 50%
and 75% of the epochs (300 epochs on CIFAR). The default model is DenseNet-BC (L=100, k=12).

The schedule, exactly: with T epochs counted from t = 0, epoch t trains with
lr * gamma ** (number of milestone fractions f with t >= f * T), so the rate first drops
in epoch ceil(f * T) (see :func:`milestone_epochs`); for T = 300, in epochs 150 and 225.

From Python::

    from densenet_edu.train import TrainConfig, train
    result = train(TrainConfig(dataset="digits", depth=40, growth_rate=12, epochs=10))
    result.history[-1]["test_acc"]

From a shell (``--help`` lists every flag)::

    python -m densenet_edu.train --dataset cifar10 --download --depth 100 --growth-rate 12
    torchrun --nproc_per_node 4 -m densenet_edu.train --dataset cifar10 ...   # 4 GPUs

Every epoch the run directory receives ``metrics.jsonl`` (one JSON object per epoch) and
``checkpoint.pt`` (written atomically); ``--resume`` continues an interrupted run exactly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from densenet_edu.data import DATASETS, DataError, load_dataset
from densenet_edu.layers import DROPOUT_PLACEMENTS
from densenet_edu.model import DenseNet, cifar_layers_per_block, densenet_cifar
from densenet_edu.progress import progress_bar

__all__ = [
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "CheckpointError",
    "TrainConfig",
    "TrainResult",
    "TrainStep",
    "build_model",
    "evaluate",
    "load_checkpoint",
    "load_model",
    "main",
    "milestone_epochs",
    "mixed_precision",
    "plot_learning_curves",
    "predict",
    "read_log",
    "train",
]

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "metrics.jsonl"
_FORMAT = "densenet_edu.train/1"

#: Settings that decide the result of a run: a resumed run must use the same ones.
_RECIPE_FIELDS = (
    "dataset",
    "train_limit",
    "test_limit",
    "split_seed",
    "image_size",
    "augment",
    "epochs",
    "batch_size",
    "lr",
    "momentum",
    "weight_decay",
    "nesterov",
    "milestones",
    "gamma",
    "seed",
)
#: Model settings that do not change the weights' meaning, ignored when comparing.
_NON_ARCHITECTURE_KEYS = ("memory_efficient",)


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or belongs to a different model or recipe."""


@dataclass
class TrainConfig:
    """Everything a training run needs; the defaults are the paper's CIFAR recipe.

    The model is a CIFAR-style DenseNet (``densenet_cifar``): three dense blocks, a 3x3
    stem, depth L = 3n + 4 (plain) or 6n + 4 (with bottlenecks).
    """

    # data
    dataset: str = "cifar10"
    data_dir: str = "data"
    download: bool = False
    augment: bool = True
    train_limit: int | None = None
    test_limit: int | None = None
    split_seed: int = 0
    image_size: int = 32  # digits only: CIFAR is 32x32
    # model: DenseNet-BC (L=100, k=12)
    depth: int = 100
    growth_rate: int = 12
    bottleneck: bool = True
    compression: float = 0.5
    drop_rate: float = 0.0
    dropout_placement: str = "paper"  # after every conv but the stem (Section 4.2)
    memory_efficient: bool = False
    # optimisation (Section 4.2)
    epochs: int = 300
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = True
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    # the run
    seed: int = 0
    out_dir: str = "runs/densenet"
    resume: bool = False
    device: str = "auto"
    num_workers: int = 0
    amp: str = "none"
    channels_last: bool = False
    deterministic: bool = True
    progress: bool = True
    verbose: bool = True

    def validate(self) -> None:
        """Raise ValueError naming the first setting that makes no sense."""
        if self.dataset not in DATASETS:
            raise ValueError(
                f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}"
            )
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _positive_int("growth_rate", self.growth_rate)
        if not _is_number(self.lr) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not _is_number(self.momentum) or not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("Nesterov momentum needs momentum > 0 (or pass --no-nesterov)")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not _is_number(self.gamma) or not 0 < self.gamma <= 1:
            raise ValueError(
                f"gamma (the learning-rate factor) must be in (0, 1], got {self.gamma!r}"
            )
        if any(not _is_number(m) or not 0 < m < 1 for m in self.milestones):
            raise ValueError(
                f"milestones are fractions of the epochs in (0, 1), e.g. 0.5 0.75; "
                f"got {list(self.milestones)}"
            )
        if not _is_number(self.compression) or not 0 < self.compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {self.compression!r}")
        if not _is_number(self.drop_rate) or not 0 <= self.drop_rate < 1:
            raise ValueError(f"drop_rate must be in [0, 1), got {self.drop_rate!r}")
        if self.dropout_placement not in DROPOUT_PLACEMENTS:
            raise ValueError(
                f"dropout_placement must be one of {', '.join(DROPOUT_PLACEMENTS)}, "
                f"got {self.dropout_placement!r}"
            )
        cifar_layers_per_block(self.depth, self.bottleneck)  # ValueError for a bad depth
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"amp must be 'none', 'bf16' or 'fp16', got {self.amp!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")


@dataclass
class TrainResult:
    """What :func:`train` returns: the per-epoch metrics and the trained model (eval mode)."""

    history: list[dict[str, float]]
    model: nn.Module
    checkpoint_path: Path
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, float]:
        """Metrics of the last epoch."""
        return self.history[-1]


def build_model(config: TrainConfig, num_classes: int, in_channels: int) -> DenseNet:
    """The CIFAR-style DenseNet that ``config`` describes."""
    return densenet_cifar(
        config.depth,
        config.growth_rate,
        bottleneck=config.bottleneck,
        compression=config.compression,
        num_classes=num_classes,
        drop_rate=config.drop_rate,
        dropout_placement=config.dropout_placement,  # type: ignore[arg-type]
        in_channels=in_channels,
        memory_efficient=config.memory_efficient,
    )


# --- the training loop ----------------------------------------------------------------------


def train(
    config: TrainConfig,
    model: nn.Module | None = None,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` (by default the DenseNet ``config`` describes) and return its metrics.

    Args:
        config: the run's settings (see :class:`TrainConfig`).
        model: any classifier taking (N, C, H, W) images to (N, classes) logits; built
            from ``config`` when omitted.
        on_epoch_end: called with each epoch's metrics after the checkpoint is written.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this; the model is wrapped
    in DistributedDataParallel, each process sees its share of every batch, and only
    rank 0 prints, logs and saves.

    Raises:
        ValueError: a nonsensical setting; :class:`~densenet_edu.data.DataError` for missing
            data; :class:`CheckpointError` for a checkpoint that is missing (with
            ``resume``), already there (without it), corrupt, or from another model.
            None of these touch the files already in ``config.out_dir``.
    """
    config.validate()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    with _distributed(world_size, config) as (rank, device):
        with _deterministic(config.deterministic, device):
            return _train(config, model, on_epoch_end, rank, world_size, device)


def _train(
    config: TrainConfig,
    model: nn.Module | None,
    on_epoch_end: Callable[[dict[str, float]], None] | None,
    rank: int,
    world_size: int,
    device: torch.device,
) -> TrainResult:
    out_dir = Path(config.out_dir)
    ckpt_path, log_path = out_dir / CHECKPOINT_NAME, out_dir / LOG_NAME
    if config.resume and not ckpt_path.is_file():
        raise CheckpointError(f"--resume: no checkpoint at {ckpt_path}")
    if not config.resume and ckpt_path.exists():
        raise CheckpointError(
            f"{ckpt_path} already exists; pass --resume to continue that run "
            "or choose another --out-dir (checkpoints are never overwritten)"
        )
    if config.batch_size % world_size:
        raise ValueError(
            f"batch_size {config.batch_size} (the global batch) must be divisible by the "
            f"number of processes, {world_size}"
        )
    if config.amp == "fp16" and device.type != "cuda":
        raise ValueError("--amp fp16 needs a CUDA GPU; use --amp bf16 on a CPU")

    # With several processes only rank 0 downloads; the others wait for it at a barrier.
    shared_download = config.download and world_size > 1
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
    _seed_everything(config.seed)
    if model is None:
        model = build_model(config, data.num_classes, data.in_channels)
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

    start_epoch, history = 0, []
    if config.resume:
        state = load_checkpoint(ckpt_path, model, config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, history = state["epoch"], list(state["history"])
        _set_rng_state(state["rng"], rank, world_size)
    elif rank:
        torch.manual_seed(config.seed + rank)  # different augmentations on each process

    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    _move_optimizer_state(optimizer, device)
    net: nn.Module = model
    if world_size > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    # The sampler shuffles with seed + epoch, so the data order of every epoch is fixed by
    # the seed alone: a resumed run replays exactly the batches it would have seen.
    sampler = DistributedSampler(
        data.train, num_replicas=world_size, rank=rank, shuffle=True, seed=config.seed
    )
    loader_rng = torch.Generator()
    train_loader = DataLoader(
        data.train,
        batch_size=config.batch_size // world_size,
        sampler=sampler,
        num_workers=config.num_workers,
        generator=loader_rng,  # seeds the worker processes' augmentations
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    test_part = Subset(data.test, range(rank, len(data.test), world_size))  # no padding
    test_loader = DataLoader(
        test_part, batch_size=max(256, config.batch_size), num_workers=config.num_workers
    )

    if out_dir and rank == 0:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot create the run directory {out_dir}: {e}") from e
    show = rank == 0
    step = TrainStep(net, optimizer, scaler, device, config.amp, memory_format)
    for epoch in range(start_epoch, config.epochs):
        sampler.set_epoch(epoch)
        loader_rng.manual_seed(config.seed * 1_000_003 + epoch)
        lr = optimizer.param_groups[0]["lr"]
        t0 = time.perf_counter()
        bar = progress_bar(
            total=len(sampler) * world_size,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            unit="img",
            disable=not (show and config.progress),
            leave=True,
        )
        net.train()
        sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n
        with bar:
            for images, labels in train_loader:
                loss_sum, correct, n = step(images, labels)
                sums += torch.tensor([loss_sum, correct, n], dtype=torch.float64)
                bar.update(n * world_size)
                bar.set_postfix(
                    loss=f"{sums[0] / sums[2]:.3f}", acc=f"{sums[1] / sums[2]:.1%}", refresh=False
                )
        train_loss, train_acc = _reduce_mean(sums, world_size)
        test_sums = _evaluate_sums(net, test_loader, device, config.amp, memory_format)
        test_loss, test_acc = _reduce_mean(test_sums, world_size)
        scheduler.step()
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "lr": lr,
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        rng = _gather_rng_states(world_size)
        if rank == 0:
            _atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in history))
            state = {
                "format": _FORMAT,
                "epoch": epoch + 1,
                "model_config": _architecture(model),
                "param_shapes": _param_shapes(model),
                "recipe": {k: _plain(getattr(config, k)) for k in _RECIPE_FIELDS},
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng,
                "history": history,
            }
            _atomic_save(state, ckpt_path)
            if config.verbose:
                print(
                    f"epoch {epoch + 1}/{config.epochs}: test loss {test_loss:.4f}, "
                    f"test acc {test_acc:.2%}, lr {lr:g}, {record['seconds']:.1f} s",
                    flush=True,
                )
        if on_epoch_end is not None:
            on_epoch_end(record)
    model.eval()
    return TrainResult(history, model, ckpt_path, log_path)


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


class TrainStep:
    """One optimisation step: forward (optionally under autocast), backward, update.

    Called with a batch ``(images, labels)`` of shapes (N, C, H, W) and (N,); returns the
    batch's summed loss, its number of correct predictions and N.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        device: torch.device,
        amp: str,
        memory_format: torch.memory_format,
    ) -> None:
        self.net, self.optimizer, self.scaler = net, optimizer, scaler
        self.device, self.amp, self.memory_format = device, amp, memory_format

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[float, float, int]:
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        labels = labels.to(self.device, non_blocking=True)
        with mixed_precision(self.device, self.amp):
            logits = self.net(images)
            loss = F.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        n = labels.numel()
        correct = (logits.argmax(1) == labels).sum().item()
        return loss.item() * n, correct, n


def _evaluate_sums(
    net: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp: str = "none",
    memory_format: torch.memory_format = torch.contiguous_format,
) -> Tensor:
    """(sum of losses, number correct, n) over ``loader``, to be summed over processes."""
    net.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for images, labels in loader:
            images = images.to(device, memory_format=memory_format)
            labels = labels.to(device)
            with mixed_precision(device, amp):
                logits = net(images)
            loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
    n = len(loader.dataset)  # type: ignore[arg-type]
    return torch.tensor([loss_sum, correct, n], dtype=torch.float64)


def _reduce_mean(sums: Tensor, world_size: int) -> tuple[float, float]:
    """Mean loss and accuracy from (loss * n, correct, n), summed over all processes."""
    if world_size > 1:
        sums = _all_reduce(sums)
    return (sums[0] / sums[2]).item(), (sums[1] / sums[2]).item()


def _all_reduce(t: Tensor) -> Tensor:
    device = (
        torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    )
    t = t.to(device)
    dist.all_reduce(t)
    return t.cpu()


def evaluate(
    model: nn.Module, dataset: Dataset, batch_size: int = 256, device: str | torch.device = "cpu"
) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``dataset`` (leaves it in eval mode)."""
    model.to(device)
    loader = DataLoader(dataset, batch_size=batch_size)
    return _reduce_mean(_evaluate_sums(model, loader, torch.device(device)), world_size=1)


def predict(
    model: nn.Module, dataset: Dataset, batch_size: int = 256, device: str | torch.device = "cpu"
) -> tuple[Tensor, Tensor]:
    """Predicted classes and true labels for every item of ``dataset``, each of shape (N,)."""
    model.to(device).eval()
    preds, labels = [], []
    with torch.no_grad():
        for x, y in DataLoader(dataset, batch_size=batch_size):
            preds.append(model(x.to(device)).argmax(1).cpu())
            labels.append(torch.as_tensor(y))
    return torch.cat(preds), torch.cat(labels)


# --- checkpoints ---------------------------------------------------------------------------


def load_checkpoint(
    path: str | os.PathLike, model: nn.Module | None = None, config: TrainConfig | None = None
) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check that it fits.

    Args:
        path: a ``checkpoint.pt`` written by :func:`train`.
        model: if given, the checkpoint must hold weights for this architecture.
        config: if given, the checkpoint's recipe (dataset, epochs, lr, seed, ...) must match.

    Raises:
        CheckpointError: the file is missing, unreadable or corrupt, or does not match.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        # weights_only: plain containers and tensors only, never arbitrary code from a file.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated zip, random bytes, a foreign pickle, ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupt?): {reason}") from e
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise CheckpointError(f"{path} is not a densenet_edu training checkpoint")
    if model is not None:
        _check_architecture(path, state, model)
    if config is not None:
        wanted = {k: _plain(getattr(config, k)) for k in _RECIPE_FIELDS}
        diffs = [
            f"{k}={state['recipe'].get(k)!r} there, {v!r} here"
            for k, v in wanted.items()
            if state["recipe"].get(k) != v
        ]
        if diffs:
            raise CheckpointError(
                f"{path} was trained with other settings ({'; '.join(diffs)}); "
                "resume with the same settings or start a new --out-dir"
            )
    return state


def load_model(path: str | os.PathLike) -> DenseNet:
    """Rebuild the DenseNet stored in a checkpoint and load its weights (eval mode)."""
    state = load_checkpoint(path)
    config = state["model_config"]
    if "growth_rate" not in config:
        raise CheckpointError(f"{path} holds a {config.get('class')}, not a densenet_edu DenseNet")
    model = DenseNet(**config)
    model.load_state_dict(state["model"])
    return model.eval()


def _architecture(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if isinstance(config, Mapping):
        return {k: _plain(v) for k, v in config.items()}
    return {"class": type(model).__name__}


def _param_shapes(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _check_architecture(path: Path, state: Mapping[str, Any], model: nn.Module) -> None:
    theirs, ours = state["model_config"], _architecture(model)
    keys = [k for k in dict.fromkeys([*theirs, *ours]) if k not in _NON_ARCHITECTURE_KEYS]
    diffs = [
        f"{k}={theirs.get(k)!r} there, {ours.get(k)!r} here"
        for k in keys
        if theirs.get(k) != ours.get(k)
    ]
    if not diffs and state["param_shapes"] != _param_shapes(model):
        diffs = ["parameter shapes differ"]
    if diffs:
        raise CheckpointError(
            f"{path} was saved from a different architecture ({'; '.join(diffs)}); "
            "use the same model settings to resume, or another --out-dir"
        )


def _atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then rename it over ``path``.

    A crash mid-write leaves the previous checkpoint intact: rename is atomic on POSIX
    and Windows when both names are on the same file system.
    """
    _atomic_write(path, lambda f: torch.save(obj, f))


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda f: f.write(text.encode()))


def _atomic_write(path: Path, write: Callable[[Any], Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _plain(value: Any) -> Any:
    """Tuples become lists so that values compare equal after a save/load round trip."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


# --- randomness, devices, processes ----------------------------------------------------------


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """This process's random states as tensors and plain values (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _gather_rng_states(world_size: int) -> list[dict[str, Any]]:
    if world_size == 1:
        return [_rng_state()]
    states: list[Any] = [None] * world_size
    dist.all_gather_object(states, _rng_state())
    return states


def _set_rng_state(states: Sequence[Mapping[str, Any]], rank: int, world_size: int) -> None:
    if len(states) != world_size:
        # Another number of processes: the data split differs anyway, so reseed freshly.
        torch.manual_seed(int(torch.seed()) if rank else 0)
        return
    state = states[rank]
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for s in optimizer.state.values():
        for k, v in s.items():
            if isinstance(v, Tensor):
                s[k] = v.to(device)


@contextlib.contextmanager
def mixed_precision(device: torch.device, amp: str) -> Iterator[None]:
    """``torch.autocast`` to bfloat16 (``amp="bf16"``) or float16 (``"fp16"``) on
    ``device``; with ``"none"`` nothing changes and the run stays in float32."""
    if amp == "none":
        yield
        return
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    with torch.autocast(device.type, dtype=dtype):
        yield


@contextlib.contextmanager
def _deterministic(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the run, restoring the caller's settings afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    if enabled:
        # warn_only: an op without a deterministic kernel warns instead of failing the run.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)
        torch.backends.cudnn.benchmark = benchmark


@contextlib.contextmanager
def _distributed(world_size: int, config: TrainConfig) -> Iterator[tuple[int, torch.device]]:
    """(rank, device) for this process; joins the process group when torchrun started us."""
    want_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda, but torch sees no CUDA GPU")
    if world_size == 1:
        yield 0, torch.device("cuda" if want_cuda else "cpu")
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    try:
        device = torch.device("cuda", local_rank) if want_cuda else torch.device("cpu")
        yield dist.get_rank(), device
    finally:
        dist.destroy_process_group()


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


# --- the metrics log and learning curves ------------------------------------------------------


def read_log(path: str | os.PathLike) -> list[dict[str, float]]:
    """The per-epoch records of a ``metrics.jsonl`` file."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_learning_curves(
    log: str | os.PathLike | Sequence[Mapping[str, float]] | Mapping[str, Any],
    title: str | None = None,
):
    """Loss and accuracy per epoch, training and test, from a log file or its records.

    Args:
        log: a ``metrics.jsonl`` path, a list of records (``TrainResult.history``), or a
            mapping ``{label: path_or_records}`` to overlay several runs.
        title: the figure's title.

    Returns:
        The matplotlib figure (two panels: loss, accuracy). Dotted vertical lines mark
        the epochs where the learning rate dropped.
    """
    import matplotlib.pyplot as plt

    runs = log if isinstance(log, Mapping) else {"": log}
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, run) in enumerate(runs.items()):
        records = read_log(run) if isinstance(run, (str, os.PathLike)) else list(run)
        if not records:
            raise ValueError(f"no epochs to plot in run {label or 0!r}")
        epochs = [r["epoch"] for r in records]
        colour = colours[i % len(colours)]
        prefix = f"{label} " if label else ""
        for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
            scale = 100 if key == "acc" else 1
            ax.plot(epochs, [scale * r[f"train_{key}"] for r in records], "--", color=colour,
                    label=f"{prefix}train")  # fmt: skip
            ax.plot(epochs, [scale * r[f"test_{key}"] for r in records], "-", color=colour,
                    label=f"{prefix}test")  # fmt: skip
        if i == 0:
            pairs = zip(records[:-1], records[1:], strict=True)
            drops = [r["epoch"] - 0.5 for a, r in pairs if r["lr"] < a["lr"]]
            for ax in (ax_loss, ax_acc):
                for x in drops:
                    ax.axvline(x, color="grey", linestyle=":", linewidth=1)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


# --- command line --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m densenet_edu.train",
        description=(
            "Train a CIFAR-style DenseNet with the paper's recipe (Huang et al., CVPR 2017, "
            "Section 4.2). Defaults: DenseNet-BC L=100 k=12 on CIFAR-10, 300 epochs, SGD "
            "with Nesterov momentum 0.9, weight decay 1e-4, batch 64, lr 0.1 divided by 10 "
            "at 50% and 75% of the epochs (after ceil(f * T) of T epochs: after 150 and 225 "
            "of 300). "
            "--drop-rate follows the paper's placement (after every convolution except the "
            "first) unless --dropout-placement torchvision. Several GPUs: torchrun "
            "--nproc_per_node N -m densenet_edu.train ..."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    bool_flag = argparse.BooleanOptionalAction
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        choices=DATASETS,
        default=d.dataset,
        help="digits: scikit-learn's 8x8 digits upsampled to 32x32, no download",
    )
    g.add_argument("--data-dir", default=d.data_dir, help="folder with (or for) the CIFAR files")
    g.add_argument("--download", action="store_true", help="download CIFAR if it is missing")
    g.add_argument(
        "--augment",
        action=bool_flag,
        default=d.augment,
        help="random pad-4 crops and horizontal flips (the paper's C10+; digits: no flips)",
    )
    g.add_argument(
        "--train-limit",
        type=int,
        default=None,
        metavar="N",
        help="train on a fixed random subset of N images",
    )
    g.add_argument(
        "--test-limit",
        type=int,
        default=None,
        metavar="N",
        help="test on a fixed random subset of N images",
    )
    g.add_argument(
        "--image-size",
        type=int,
        default=d.image_size,
        help="side of the upsampled digits (digits only; CIFAR is 32)",
    )
    g = p.add_argument_group("model (a CIFAR-style DenseNet: 3 blocks, 3x3 stem)")
    g.add_argument(
        "--depth",
        type=int,
        default=d.depth,
        help="L: 6n+4 with bottlenecks (100, 190, 250), 3n+4 without (40, 100)",
    )
    g.add_argument("--growth-rate", "-k", type=int, default=d.growth_rate, help="k")
    g.add_argument(
        "--bottleneck",
        action=bool_flag,
        default=d.bottleneck,
        help="1x1 bottleneck convolutions (DenseNet-B)",
    )
    g.add_argument(
        "--compression",
        type=float,
        default=d.compression,
        help="theta: 0.5 for DenseNet-C/-BC, 1 for none",
    )
    g.add_argument(
        "--drop-rate",
        type=float,
        default=d.drop_rate,
        help="dropout rate (the paper: 0.2 without augmentation); where it goes is "
        "--dropout-placement",
    )
    g.add_argument(
        "--dropout-placement",
        choices=DROPOUT_PLACEMENTS,
        default=d.dropout_placement,
        help="paper: after every conv except the first (bottleneck 1x1, 3x3, transition "
        "1x1; Section 4.2 and the authors' code); torchvision: once per dense layer, after "
        "its 3x3 conv (the ImageNet models' default)",
    )
    g.add_argument(
        "--memory-efficient",
        action="store_true",
        help="recompute concatenations in the backward pass (less memory)",
    )
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help="global batch size, split over the processes",
    )
    g.add_argument("--lr", type=float, default=d.lr, help="initial learning rate")
    g.add_argument("--momentum", type=float, default=d.momentum)
    g.add_argument("--nesterov", action=bool_flag, default=d.nesterov)
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument(
        "--milestones",
        type=float,
        nargs="+",
        default=list(d.milestones),
        metavar="FRACTION",
        help="divide the lr by 1/gamma at these fractions of the epochs",
    )
    g.add_argument("--gamma", type=float, default=d.gamma, help="factor applied at each milestone")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--out-dir", default=d.out_dir, help="where metrics.jsonl and checkpoint.pt go")
    g.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoint.pt")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device)
    g.add_argument("--workers", type=int, default=d.num_workers, help="DataLoader worker processes")
    g.add_argument(
        "--amp",
        choices=("none", "bf16", "fp16"),
        default=d.amp,
        help="mixed precision with autocast (fp16 uses a gradient scaler; CUDA only)",
    )
    g.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    g.add_argument(
        "--deterministic",
        action=bool_flag,
        default=d.deterministic,
        help="deterministic kernels (same seed, same result on the same machine)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    return p  # fmt: skip


def config_from_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse command-line arguments into a :class:`TrainConfig` (argparse errors exit 2)."""
    a = _parser().parse_args(argv)
    return TrainConfig(
        dataset=a.dataset,
        data_dir=a.data_dir,
        download=a.download,
        augment=a.augment,
        train_limit=a.train_limit,
        test_limit=a.test_limit,
        image_size=a.image_size,
        depth=a.depth,
        growth_rate=a.growth_rate,
        bottleneck=a.bottleneck,
        compression=a.compression,
        drop_rate=a.drop_rate,
        dropout_placement=a.dropout_placement,
        memory_efficient=a.memory_efficient,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        momentum=a.momentum,
        nesterov=a.nesterov,
        weight_decay=a.weight_decay,
        milestones=tuple(a.milestones),
        gamma=a.gamma,
        seed=a.seed,
        out_dir=a.out_dir,
        resume=a.resume,
        device=a.device,
        num_workers=a.workers,
        amp=a.amp,
        channels_last=a.channels_last,
        deterministic=a.deterministic,
        progress=not a.quiet,
        verbose=not a.quiet,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: returns 0 on success; bad input prints one line, exits 2."""
    config = config_from_args(argv)
    try:
        result = train(config)
    except (ValueError, DataError, CheckpointError) as e:
        print(f"{_parser().prog}: error: {e}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0 and config.verbose:
        final = result.final
        print(
            f"done: test accuracy {final['test_acc']:.2%} after {final['epoch']} epochs; "
            f"checkpoint {result.checkpoint_path}, log {result.log_path}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
