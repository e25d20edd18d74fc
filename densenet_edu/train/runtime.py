"""Where and how a run executes: device, processes, mixed precision, determinism, seeds."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_reduce",
    "deterministic",
    "distributed",
    "mixed_precision",
    "move_optimizer_state",
    "seed_everything",
    "world_size",
]


def world_size() -> int:
    """The number of processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
def deterministic(enabled: bool, device: torch.device) -> Iterator[None]:
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
def distributed(
    processes: int, device: str, deterministic: bool
) -> Iterator[tuple[int, torch.device]]:
    """(rank, device) for this process; joins the process group when torchrun started us.

    Args:
        processes: the world size; 1 runs in this process alone.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        deterministic: ask cuBLAS for its deterministic workspace too.
    """
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' needs a CUDA GPU, but torch sees none")
    if processes == 1:
        yield 0, torch.device("cuda" if want_cuda else "cpu")
        return
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local_rank)
        if deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    try:
        here = torch.device("cuda", local_rank) if want_cuda else torch.device("cpu")
        yield dist.get_rank(), here
    finally:
        dist.destroy_process_group()


def all_reduce(t: Tensor) -> Tensor:
    """The sum of ``t`` over all processes (NCCL reduces on the GPU, Gloo on the CPU)."""
    where = (
        torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    )
    t = t.to(where)
    dist.all_reduce(t)
    return t.cpu()


def move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Momentum buffers loaded from a checkpoint live on the CPU; move them to the model."""
    for s in optimizer.state.values():
        for k, v in s.items():
            if isinstance(v, Tensor):
                s[k] = v.to(device)
