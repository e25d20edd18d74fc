"""The training run behind the book's Figure 5: its weight-decay budget, its checkpoint.

:func:`slim_checkpoint` writes a small copy of a training checkpoint (weights in float16,
no optimiser state) that :func:`densenet_edu.train.load_model` reads; the book ships one,
:data:`FIGURE5_CHECKPOINT`, made by :data:`FIGURE5_COMMAND`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = [
    "FIGURE5_CHECKPOINT",
    "FIGURE5_COMMAND",
    "slim_checkpoint",
    "steps_per_epoch",
    "weight_decay_budget",
]

#: A plain DenseNet (L=28, k=12, no bottleneck, no compression) trained on the digits (8x8)
#: for 30 epochs with the paper's recipe except a weight decay of 0.034 instead of 1e-4, so
#: that the run's weight-decay budget (see :func:`weight_decay_budget`) matches the paper's
#: 300 CIFAR epochs; weights stored in float16 (about 1 MB). Made by :data:`FIGURE5_COMMAND`;
#: read it with ``densenet_edu.train.load_model``.
FIGURE5_CHECKPOINT = Path(__file__).parent.parent / "checkpoints" / "figure5_digits_L28_k12.pt"

#: The shell commands that made :data:`FIGURE5_CHECKPOINT` (from the repository root; a few
#: minutes on two idle CPU cores; the run shipped took 22 minutes on two busy ones).
FIGURE5_COMMAND = (
    "python -m densenet_edu.train --dataset digits --image-size 8 --depth 28 "
    "--growth-rate 12 --no-bottleneck --compression 1 --epochs 30 --weight-decay 0.034 "
    "--out-dir runs/figure5\n"
    'python -c "from densenet_edu.reuse import slim_checkpoint; '
    "slim_checkpoint('runs/figure5/checkpoint.pt', "
    "'densenet_edu/checkpoints/figure5_digits_L28_k12.pt')\""
)


def weight_decay_budget(
    epochs: int,
    steps_per_epoch: int,
    weight_decay: float = 1e-4,
    lr: float = 0.1,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> float:
    """How far weight decay alone pulls a weight towards zero over a run: sum of lr x decay.

    Each SGD step multiplies a weight by (1 - lr * weight_decay) before the gradient acts,
    so a weight that gets no consistent gradient ends near ``exp(-budget)`` times its
    initial value (momentum aside). The learning rate follows ``densenet_edu.train``'s step
    schedule (:func:`densenet_edu.train.milestone_epochs`).
    """
    from densenet_edu.train import milestone_epochs  # the trainer loads only when used

    drops = milestone_epochs(epochs, milestones)
    total_lr = sum(lr * gamma ** sum(e >= d for d in drops) for e in range(epochs))
    return weight_decay * total_lr * steps_per_epoch


def steps_per_epoch(num_images: int, batch_size: int = 64) -> int:
    """SGD steps in one epoch: one per batch, the last one possibly smaller."""
    return math.ceil(num_images / batch_size)


# --- a small checkpoint to ship --------------------------------------------------------------


def slim_checkpoint(
    src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype = torch.float16
) -> Path:
    """Copy a training checkpoint without its optimiser state, weights stored as ``dtype``.

    The copy keeps the architecture, the recipe and the per-epoch history, so
    ``densenet_edu.train.load_model`` and ``load_checkpoint`` read it as they read the
    original (the weights come back as float32); it cannot be resumed.
    """
    from densenet_edu.train import load_checkpoint  # the trainer loads only when used

    state = load_checkpoint(src)
    keep = ("format", "epoch", "model_config", "param_shapes", "recipe", "history")
    slim = {k: state[k] for k in keep if k in state}
    slim["model"] = {
        k: v.to(dtype) if v.is_floating_point() else v for k, v in state["model"].items()
    }
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(slim, dst)
    return dst
