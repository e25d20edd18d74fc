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

Every epoch the run directory receives ``checkpoint.pt`` and then ``metrics.jsonl`` (one
JSON object per epoch), both written atomically. ``--resume`` continues an interrupted run
exactly; ``--resume auto`` continues if there is a checkpoint and starts otherwise, so a
job that is requeued with the same command line picks up where it was killed.

The package: :mod:`~densenet_edu.train.config` (the settings), :mod:`.loop` (the loop),
:mod:`.steps` (a batch's work), :mod:`.checkpoint` (files and random states),
:mod:`.runtime` (devices, processes, precision), :mod:`.curves` (learning curves),
:mod:`.cli` (the command line).
"""

from densenet_edu.errors import CheckpointError, DataError
from densenet_edu.train.checkpoint import CHECKPOINT_NAME, LOG_NAME, load_checkpoint, load_model
from densenet_edu.train.cli import config_from_args, main
from densenet_edu.train.config import TrainConfig
from densenet_edu.train.curves import plot_learning_curves, read_log
from densenet_edu.train.loop import TrainResult, build_model, milestone_epochs, train
from densenet_edu.train.runtime import mixed_precision
from densenet_edu.train.steps import TrainStep, evaluate, predict

__all__ = [
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "CheckpointError",
    "DataError",
    "TrainConfig",
    "TrainResult",
    "TrainStep",
    "build_model",
    "config_from_args",
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
