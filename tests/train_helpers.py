"""Helpers of the training tests: a tiny run's settings and the command line in a subprocess."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from densenet_edu.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]

#: DenseNet-BC with one layer per block (L=10), k=4, on 96 digits at 16x16: about a
#: second per run of 3 epochs.
TINY = dict(
    dataset="digits",
    train_limit=96,
    test_limit=48,
    image_size=16,
    depth=10,
    growth_rate=4,
    epochs=3,
    batch_size=32,
    lr=0.05,
    progress=False,
    verbose=False,
)


def tiny(out_dir: Path, **overrides) -> TrainConfig:
    """The tiny run's settings, writing to ``out_dir``."""
    return TrainConfig(**{**TINY, "out_dir": str(out_dir), **overrides})


def tiny_args(out_dir: Path, **overrides) -> list[str]:
    """The same run as command-line arguments."""
    settings = {**TINY, "out_dir": str(out_dir), **overrides}
    args = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else flag.replace("--", "--no-", 1))
        else:
            args += [flag, str(value)]
    return args


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "densenet_edu.train", *args]


def cli_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m densenet_edu.train ARGS`` from the repository root, output captured."""
    return subprocess.run(
        cli_command(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=cli_env()
    )


def without_times(history: list[dict]) -> list[dict]:
    """Records without their wall-clock seconds, the one field that differs between runs."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread, as the subprocesses do (``OMP_NUM_THREADS=1``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
