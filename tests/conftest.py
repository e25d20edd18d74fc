"""Shared fixtures: a `device` that covers CUDA when present, and deterministic seeds."""

from __future__ import annotations

import os

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
