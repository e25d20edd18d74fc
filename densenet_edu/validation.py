"""Every check of a DenseNet setting, in one place, with one message per mistake.

``DenseNetConfig`` (and so ``DenseNet`` and every factory), ``DenseLayer``, ``DenseBlock``,
``Transition``, ``densenet_cifar`` and the trainer's configuration all call these
functions, so a mistake reads the same whichever door it came in by. Each function returns
the value in its canonical type: integral numbers such as ``numpy.int64(32)`` or a 0-d
integer tensor become ``int``, so a setting read from a NumPy array or a YAML file works.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

__all__ = [
    "DROPOUT_PLACEMENTS",
    "STEMS",
    "check_block_config",
    "check_choice",
    "check_compression",
    "check_config",
    "check_dropout_placement",
    "check_flag",
    "check_positive_int",
    "check_probability",
    "check_stem",
    "cifar_layers_per_block",
]

#: Where dropout goes when ``drop_rate > 0`` (see ``densenet_edu.layers.DropoutPlacement``).
DROPOUT_PLACEMENTS: tuple[str, ...] = ("torchvision", "paper")
#: The stems a DenseNet can have: ImageNet's (Table 1) or CIFAR's (Section 3).
STEMS: tuple[str, ...] = ("imagenet", "cifar")


def _is_bool(value: object) -> bool:
    return isinstance(value, (bool, np.bool_))


def _as_int(value: object) -> int | None:
    """``value`` as an int if it is an integral number (not a bool, not a float), else None."""
    if _is_bool(value):
        return None
    try:
        return operator.index(value)  # int, numpy integers, 0-d integer tensors
    except TypeError:
        return None


def check_positive_int(name: str, value: object) -> int:
    """``value`` as a positive int; ``ValueError`` naming ``name`` otherwise."""
    number = _as_int(value)
    if number is None or number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number


def check_flag(name: str, value: object) -> bool:
    """``value`` as a bool; strings, numbers and None are refused (``'no'`` is truthy)."""
    if _is_bool(value):
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r}")


def check_probability(name: str, value: object) -> float:
    """A probability in [0, 1): dropout with p = 1 would zero every map."""
    number = None if _is_bool(value) else _as_float(value)
    if number is None or not 0.0 <= number < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {value!r}")
    return number


def check_compression(compression: object) -> float:
    """theta in (0, 1] (Section 3, "Compression")."""
    value = None if _is_bool(compression) else _as_float(compression)
    if value is None or not 0.0 < value <= 1.0:
        raise ValueError(
            f"compression (theta) must be in (0, 1], got {compression!r}; "
            "the paper uses 0.5 for DenseNet-C/-BC and 1 for no compression"
        )
    return value


def _as_float(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if isinstance(value, str) or math.isnan(number):
        return None
    return number


def check_block_config(block_config: object) -> tuple[int, ...]:
    """A non-empty sequence of positive layer counts, as a tuple of ints."""
    counts = None
    if isinstance(block_config, Sequence) and not isinstance(block_config, (str, bytes)):
        counts = [_as_int(n) for n in block_config]
    elif hasattr(block_config, "tolist") and getattr(block_config, "ndim", 0) == 1:
        counts = [_as_int(n) for n in block_config.tolist()]  # a NumPy array or tensor
    if not counts or any(n is None or n < 1 for n in counts):
        raise ValueError(
            "block_config must be a non-empty sequence of positive layer counts, "
            f"e.g. (6, 12, 24, 16); got {block_config!r}"
        )
    return tuple(counts)  # type: ignore[arg-type]


def check_choice(name: str, value: object, choices: Sequence[str], meaning: str = "") -> str:
    """One of ``choices``; the message lists them (with ``meaning`` if given)."""
    if not isinstance(value, str) or value not in choices:
        listed = meaning or " or ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be {listed}, got {value!r}")
    return value


def check_dropout_placement(placement: object) -> str:
    return check_choice(
        "dropout_placement",
        placement,
        DROPOUT_PLACEMENTS,
        "'torchvision' (once per dense layer) or 'paper' "
        "(after every conv but the first, Section 4.2)",
    )


def check_stem(stem: object) -> str:
    return check_choice("stem", stem, STEMS)


class _ConfigFields(Protocol):
    growth_rate: Any
    block_config: Any
    num_init_features: Any
    bn_size: Any
    drop_rate: Any
    num_classes: Any
    compression: Any
    bottleneck: Any
    memory_efficient: Any
    in_channels: Any
    stem: Any
    dropout_placement: Any


def check_config(config: _ConfigFields) -> dict[str, Any]:
    """Every field of a ``DenseNetConfig``, checked and in canonical types.

    Fields are checked in the order of the dataclass, so the first mistake is reported.
    """
    return dict(
        growth_rate=check_positive_int("growth_rate", config.growth_rate),
        block_config=check_block_config(config.block_config),
        num_init_features=check_positive_int("num_init_features", config.num_init_features),
        bn_size=check_positive_int("bn_size", config.bn_size),
        drop_rate=check_probability("drop_rate", config.drop_rate),
        num_classes=check_positive_int("num_classes", config.num_classes),
        compression=check_compression(config.compression),
        bottleneck=check_flag("bottleneck", config.bottleneck),
        memory_efficient=check_flag("memory_efficient", config.memory_efficient),
        in_channels=check_positive_int("in_channels", config.in_channels),
        stem=check_stem(config.stem),
        dropout_placement=check_dropout_placement(config.dropout_placement),
    )


def cifar_layers_per_block(depth: object, bottleneck: bool) -> int:
    """Layers per dense block of a CIFAR DenseNet of total depth L (Section 3).

    L counts weight layers: the stem conv, two transition convs, the classifier and
    3 blocks of n dense layers with 1 conv each (2 with a bottleneck):
    L = 3 * n * convs_per_layer + 4.
    """
    bottleneck = check_flag("bottleneck", bottleneck)
    number = _as_int(depth)
    if number is None:
        raise ValueError(f"depth must be an integer, got {depth!r}")
    convs = 2 if bottleneck else 1
    n, remainder = divmod(number - 4, 3 * convs)
    if remainder or n < 1:
        step = 3 * convs
        lower = max(4 + step, number - (number - 4) % step)
        kind = "DenseNet-BC/-B (2 convs per layer)" if bottleneck else "DenseNet (1 conv per layer)"
        raise ValueError(
            f"depth {number} does not fit L = {step}n + 4 for {kind}; "
            f"nearest valid depths: {lower}, {lower + step} "
            f"(the paper uses {'100, 190, 250' if bottleneck else '40, 100'})"
        )
    return n
