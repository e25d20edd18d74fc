"""Shared fixtures: a `device` that covers CUDA when present, deterministic seeds, a fake
CIFAR-10 on disk, and the "same training step" comparison of two models."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

CUDA = torch.cuda.is_available()
MPS = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()

if os.environ.get("DENSENET_EDU_REQUIRE_CUDA") == "1" and not CUDA:
    raise pytest.UsageError("DENSENET_EDU_REQUIRE_CUDA=1 but torch sees no CUDA device")


@pytest.fixture(
    params=[
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="no CUDA device")),
    ]
    + (["mps"] if MPS else [])
)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Numeric tests run on the CPU, and again on CUDA / MPS where one is present."""
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- a fake CIFAR-10 ---------------------------------------------------------------------

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
]  # fmt: skip


def _write_fake_cifar10(root: Path, per_batch: int = 2, seed: int = 0) -> Path:
    """A miniature CIFAR-10 in torchvision's format under ``root``; returns ``root``.

    Five training batches, a test batch and batches.meta. Each batch is a pickled dict
    with "data", (per_batch, 3072) uint8 rows (R, G, B planes of 32x32), and "labels";
    image j of batch i has label (i + j) % 10.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        batch = {
            "data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
            "labels": [(i + j) % 10 for j in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_CLASSES}, f)
    return root


@pytest.fixture
def fake_cifar10(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """``fake_cifar10(root, per_batch=2, seed=0)`` writes a miniature CIFAR-10 that
    torchvision's CIFAR10 loads in this process (its MD5 checks, which fakes cannot
    pass, are switched off for the test)."""
    cifar = pytest.importorskip("torchvision.datasets.cifar")
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    return _write_fake_cifar10


# --- the same training step --------------------------------------------------------------

Tolerance = tuple[float, float] | None  # (rtol, atol); None: torch.testing's defaults


def _assert_same_training_step(
    expected: torch.nn.Module,
    actual: torch.nn.Module,
    x: torch.Tensor,
    target: torch.Tensor | None = None,
    *,
    outputs: Tolerance = None,
    grads: Tolerance = (1e-4, 1e-5),
) -> None:
    """One forward and backward pass of each model in train mode on the same batch; then
    the outputs, every parameter's gradient and every buffer (BatchNorm's running
    statistics) must agree, matched by name. The loss is cross-entropy against
    ``target``, or the sum of the outputs without one."""
    results = []
    for model in (expected, actual):
        model.train()
        out = model(x)
        loss = out.sum() if target is None else torch.nn.functional.cross_entropy(out, target)
        loss.backward()
        results.append(out)
    rtol, atol = outputs if outputs else (None, None)
    torch.testing.assert_close(results[1], results[0], rtol=rtol, atol=atol)
    expected_params = dict(expected.named_parameters())
    assert [n for n, _ in actual.named_parameters()] == list(expected_params)
    for name, p in actual.named_parameters():
        torch.testing.assert_close(
            p.grad, expected_params[name].grad, rtol=grads[0], atol=grads[1], msg=name
        )
    expected_buffers = dict(expected.named_buffers())
    assert [n for n, _ in actual.named_buffers()] == list(expected_buffers)
    for name, b in actual.named_buffers():
        torch.testing.assert_close(b, expected_buffers[name], msg=name)


@pytest.fixture
def assert_same_training_step() -> Callable[..., None]:
    """The comparison of two models' training steps (see ``_assert_same_training_step``)."""
    return _assert_same_training_step
