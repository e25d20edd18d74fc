"""The CIFAR DenseNet-BC sections of :mod:`densenet_edu.bench`: the model, and peak memory.

``bench_memory`` runs each configuration in a fresh Python process, which imports
``measure_training_memory`` from :mod:`densenet_edu.bench` (re-exported there).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

import densenet_edu as de
from densenet_edu.bench_report import Result
from densenet_edu.measure import peak_memory_growth, saved_tensor_bytes
from densenet_edu.progress import progress_bar

if TYPE_CHECKING:  # annotations only: bench imports this module
    from densenet_edu.bench import BenchConfig

__all__ = ["bench_memory", "cifar_model", "measure_training_memory"]


def cifar_model(memory_efficient: bool, device: torch.device, depth: int = 100) -> nn.Module:
    torch.manual_seed(0)
    return de.densenet_cifar(depth, 12, memory_efficient=memory_efficient).to(device)


def measure_training_memory(
    memory_efficient: bool, batch: int, device: str, depth: int = 100
) -> dict[str, int]:
    """Peak memory of one CIFAR DenseNet-BC-100 training step, in this process.

    ``peak_bytes``: :func:`densenet_edu.measure.peak_memory_growth` of one training step,
    measured once the model, data, gradients and optimizer state exist, so it is the
    memory of activations and backward temporaries. On the CPU, run it in a fresh
    process (see :func:`bench_memory`) so that memory freed by earlier work in the
    process cannot be reused and hide the growth. ``saved_bytes``:
    :func:`densenet_edu.measure.saved_tensor_bytes` of the same forward pass.
    """
    dev = torch.device(device)
    model = cifar_model(memory_efficient, dev, depth).train()
    x = torch.randn(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)

    def step(n: int) -> None:
        # Gradients are zeroed, not freed, so the measured step allocates none of them.
        optimizer.zero_grad(set_to_none=False)
        F.cross_entropy(model(x[:n]), y[:n]).backward()
        optimizer.step()

    step(1)  # creates gradients and momentum buffers with a small peak
    peak = peak_memory_growth(lambda: step(batch), dev)
    saved = saved_tensor_bytes(model, x)
    return {"peak_bytes": int(peak), "saved_bytes": int(saved)}


def bench_memory(cfg: BenchConfig) -> list[Result]:
    """Peak training memory, plain vs memory-efficient, each in a fresh subprocess."""
    results = []
    for name, flag in progress_bar(
        [("densenet_edu eager", False), ("densenet_edu memory_efficient", True)],
        desc=f"memory (fresh process each, batch {cfg.cifar_batch})",
    ):
        code = (
            "import json, torch; from densenet_edu.bench import measure_training_memory; "
            f"torch.set_num_threads({torch.get_num_threads()}); "
            f"print(json.dumps(measure_training_memory({flag}, {cfg.cifar_batch}, "
            f"{cfg.device!r}, {cfg.cifar_depth})))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        results.append(Result("memory", name, cfg.cifar_batch, **figures))
    reference = results[0]
    for r in results:
        r.vs_reference = r.peak_bytes / reference.peak_bytes if reference.peak_bytes else None
    return results
