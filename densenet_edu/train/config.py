"""The settings of a training run: one dataclass, its checks, and the model it describes.

Each field carries its own help text (``field(metadata={"help": ...})``); the command line
(:mod:`densenet_edu.train.cli`) is generated from these fields, so a setting is declared
once, here.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from densenet_edu.config import DenseNetConfig
from densenet_edu.data import DATASETS
from densenet_edu.validation import (
    DROPOUT_PLACEMENTS,
    check_choice,
    check_compression,
    check_flag,
    check_positive_int,
    cifar_layers_per_block,
)

__all__ = ["AMP_MODES", "DEVICES", "RECIPE_FIELDS", "TrainConfig"]

AMP_MODES = ("none", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")

#: Settings that decide the result of a run: a resumed run must use the same ones.
RECIPE_FIELDS = (
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


def _setting(default: Any, group: str, help: str, **cli: Any) -> Any:
    """A dataclass field with the help text and argparse options of its command-line flag.

    ``cli`` may hold ``flag`` (another flag name), ``short``, ``choices``, ``metavar``,
    ``nargs``, ``const`` and ``type``; anything else is derived from the field's type.
    """
    return field(default=default, metadata={"group": group, "help": help, **cli})


@dataclass
class TrainConfig:
    """Everything a training run needs; the defaults are the paper's CIFAR recipe.

    The model is a CIFAR-style DenseNet (``densenet_cifar``): three dense blocks, a 3x3
    stem, depth L = 3n + 4 (plain) or 6n + 4 (with bottlenecks). Optimisation follows
    Section 4.2 of the paper. Nonsensical values raise ValueError when the config is made.
    """

    # data
    dataset: str = _setting(
        "cifar10", "data", "digits: scikit-learn's 8x8 digits upsampled to 32x32, no download",
        choices=DATASETS,
    )  # fmt: skip
    data_dir: str = _setting("data", "data", "folder with (or for) the CIFAR files")
    download: bool = _setting(False, "data", "download CIFAR if it is missing")
    augment: bool = _setting(
        True, "data", "random pad-4 crops and horizontal flips (the paper's C10+; digits: no flips)"
    )
    train_limit: int | None = _setting(
        None, "data", "train on a fixed random subset of N images", metavar="N"
    )
    test_limit: int | None = _setting(
        None, "data", "test on a fixed random subset of N images", metavar="N"
    )
    split_seed: int = _setting(0, "data", "seeds the digits train/test split and the subsets")
    image_size: int = _setting(
        32, "data", "side of the upsampled digits (digits only; CIFAR is 32)"
    )
    # model: DenseNet-BC (L=100, k=12)
    depth: int = _setting(
        100, "model", "L: 6n+4 with bottlenecks (100, 190, 250), 3n+4 without (40, 100)"
    )
    growth_rate: int = _setting(12, "model", "k, feature maps added by each layer", short="-k")
    bottleneck: bool = _setting(True, "model", "1x1 bottleneck convolutions (DenseNet-B)")
    compression: float = _setting(0.5, "model", "theta: 0.5 for DenseNet-C/-BC, 1 for none")
    drop_rate: float = _setting(
        0.0, "model", "dropout rate (the paper: 0.2 without augmentation); where it goes is "
        "--dropout-placement",
    )  # fmt: skip
    dropout_placement: str = _setting(
        "paper", "model", "paper: after every conv except the first (bottleneck 1x1, 3x3, "
        "transition 1x1; Section 4.2 and the authors' code); torchvision: once per dense "
        "layer, after its 3x3 conv (the ImageNet models' default)",
        choices=DROPOUT_PLACEMENTS,
    )  # fmt: skip
    memory_efficient: bool = _setting(
        False, "model", "recompute concatenations in the backward pass (less memory)"
    )
    # optimisation (Section 4.2)
    epochs: int = _setting(300, "optimisation", "passes over the training set (the paper: 300)")
    batch_size: int = _setting(64, "optimisation", "global batch size, split over the processes")
    lr: float = _setting(0.1, "optimisation", "initial learning rate")
    momentum: float = _setting(0.9, "optimisation", "SGD momentum (no dampening)")
    weight_decay: float = _setting(1e-4, "optimisation", "L2 penalty added to the gradient")
    nesterov: bool = _setting(True, "optimisation", "Nesterov momentum")
    milestones: tuple[float, ...] = _setting(
        (0.5, 0.75), "optimisation", "multiply the lr by gamma at these fractions of the "
        "epochs (0.5 0.75: at 50% and 75%)",
        metavar="FRACTION",
    )  # fmt: skip
    gamma: float = _setting(0.1, "optimisation", "factor applied to the lr at each milestone")
    # the run
    seed: int = _setting(0, "run", "seeds the weights, the data order and the augmentations")
    out_dir: str = _setting("runs/densenet", "run", "where metrics.jsonl and checkpoint.pt go")
    resume: bool | str = _setting(
        False, "run", "continue from OUT_DIR/checkpoint.pt (an error if it is missing); "
        "'auto': continue if it is there, else start (for a job that is requeued with the "
        "same command); a PATH: continue from that checkpoint",
        nargs="?", const=True, type=str, metavar="auto|PATH",
    )  # fmt: skip
    device: str = _setting("auto", "run", "auto: a CUDA GPU if there is one", choices=DEVICES)
    num_workers: int = _setting(
        0, "run", "DataLoader worker processes", flag="--workers", metavar="N"
    )
    amp: str = _setting(
        "none", "run", "mixed precision with autocast (fp16 uses a gradient scaler; CUDA only)",
        choices=AMP_MODES,
    )  # fmt: skip
    channels_last: bool = _setting(False, "run", "NHWC memory format")
    deterministic: bool = _setting(
        True, "run", "deterministic kernels (same seed, same result on the same machine)"
    )
    progress: bool = _setting(True, "run", "a progress bar per epoch")
    verbose: bool = _setting(True, "run", "a line per epoch when there is no bar, and a summary")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first setting that makes no sense.

        Checks use :mod:`densenet_edu.validation`, as every model setting does, so a
        mistake reads the same here and in ``DenseNet``; valid values are stored in their
        canonical types (``numpy.int64(5)`` epochs become ``5``, a list of milestones a
        tuple). Messages start with the field's name (``epochs must be ...``); the command
        line rewrites them with its flags.
        """
        _check_data(self)
        _check_optimisation(self)
        _check_run(self)
        # The dataset fixes the classes and channels; any valid pair checks the rest.
        self.model_config(num_classes=10, in_channels=3)

    def model_config(self, num_classes: int, in_channels: int) -> DenseNetConfig:
        """The CIFAR DenseNet of this run (``densenet_cifar``'s rule, paper Section 3).

        Three blocks of n layers with L = 3n + 4 (6n + 4 with bottlenecks); the 3x3 stem
        has 16 channels, 2k for DenseNet-BC (bottlenecks and compression).
        """
        n = cifar_layers_per_block(self.depth, self.bottleneck)  # "depth 99 does not fit ..."
        k = check_positive_int("growth_rate", self.growth_rate)
        is_bc = (
            check_flag("bottleneck", self.bottleneck) and check_compression(self.compression) < 1
        )
        return DenseNetConfig(
            growth_rate=k,
            block_config=(n, n, n),
            num_init_features=2 * k if is_bc else 16,
            drop_rate=self.drop_rate,
            num_classes=num_classes,
            compression=self.compression,
            bottleneck=self.bottleneck,
            memory_efficient=self.memory_efficient,
            in_channels=in_channels,
            stem="cifar",
            dropout_placement=self.dropout_placement,  # type: ignore[arg-type]
        )


def _check_data(c: TrainConfig) -> None:
    c.dataset = check_choice("dataset", c.dataset, DATASETS)
    c.download = check_flag("download", c.download)
    c.augment = check_flag("augment", c.augment)
    for name in ("train_limit", "test_limit"):
        if getattr(c, name) is not None:
            setattr(c, name, check_positive_int(name, getattr(c, name)))
    c.split_seed = _non_negative_int("split_seed", c.split_seed)
    c.image_size = check_positive_int("image_size", c.image_size)


def _check_optimisation(c: TrainConfig) -> None:
    c.epochs = check_positive_int("epochs", c.epochs)
    c.batch_size = check_positive_int("batch_size", c.batch_size)
    c.lr = _number("lr", c.lr, "a positive number", lambda x: x > 0)
    c.momentum = _number("momentum", c.momentum, "in [0, 1)", lambda x: 0 <= x < 1)
    c.nesterov = check_flag("nesterov", c.nesterov)
    if c.nesterov and c.momentum == 0:
        raise ValueError("momentum must be > 0 for nesterov=True")
    c.weight_decay = _number("weight_decay", c.weight_decay, ">= 0", lambda x: x >= 0)
    c.gamma = _number("gamma", c.gamma, "in (0, 1] (the lr's factor)", lambda x: 0 < x <= 1)
    milestones = [_float(m) for m in c.milestones] if _is_sequence(c.milestones) else [None]
    if any(m is None or not 0 < m < 1 for m in milestones):
        raise ValueError(
            f"milestones are fractions of the epochs in (0, 1), e.g. 0.5 0.75; got {c.milestones!r}"
        )
    c.milestones = tuple(milestones)  # type: ignore[arg-type]


def _check_run(c: TrainConfig) -> None:
    c.seed = _non_negative_int("seed", c.seed)
    c.num_workers = _non_negative_int("num_workers", c.num_workers)
    c.amp = check_choice("amp", c.amp, AMP_MODES)
    c.device = check_choice("device", c.device, DEVICES)
    for name in ("channels_last", "deterministic", "progress", "verbose"):
        setattr(c, name, check_flag(name, getattr(c, name)))
    if not isinstance(c.resume, (bool, str, os.PathLike)) or c.resume == "":
        raise ValueError(f"resume must be True, False, 'auto' or a path, got {c.resume!r}")
    if isinstance(c.resume, os.PathLike):
        c.resume = os.fspath(c.resume)
    if not isinstance(c.out_dir, (str, os.PathLike)) or not os.fspath(c.out_dir):
        raise ValueError(f"out_dir must name a folder, got {c.out_dir!r}")


def _non_negative_int(name: str, value: object) -> int:
    try:
        number = None if isinstance(value, (bool, np.bool_)) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return number


def _float(value: object) -> float | None:
    """A finite real number as a float; None for anything else (bools and strings too)."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _number(name: str, value: object, expected: str, ok: Callable[[float], bool]) -> float:
    number = _float(value)
    if number is None or not ok(number):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return number


def _is_sequence(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))
