"""Readable errors for bad input, raised before torch would fail deep inside a kernel."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "InputShapeError",
    "NotScriptableError",
    "WeightsError",
    "check_feature_maps",
    "describe_unreadable_file",
]


class InputShapeError(ValueError):
    """An input tensor has the wrong rank, channel count or spatial size."""


class WeightsError(RuntimeError):
    """Weights could not be found, downloaded or matched to the model."""


class NotScriptableError(RuntimeError):
    """``torch.jit.script`` was asked to compile a module that TorchScript cannot express.

    The dense layers take lists of tensors and check their inputs in Python; rather than
    fail deep inside the TorchScript compiler, the modules refuse at once (from
    ``__prepare_scriptable__``, which ``torch.jit.script`` calls first) and name the
    routes that work.
    """

    def __init__(self, name: str) -> None:
        super().__init__(
            f"{name} does not support torch.jit.script (TorchScript cannot express its "
            "lists of feature maps and Python input checks). Use "
            "torch.export.export(model, (x,)) for a graph to save or deploy, "
            "torch.compile(model) for speed, or torch.jit.trace(model, x) if you need "
            "TorchScript"
        )


def check_feature_maps(
    features: Sequence[Tensor], expected_channels: int, where: str, min_size: int = 1
) -> None:
    """Check that ``features`` are 4-D maps of one spatial size adding up to the expected width.

    Args:
        features: tensors of shape (N, C_i, H, W) that will be concatenated on dim 1.
        expected_channels: the sum of the C_i the module was built for.
        where: the module name to put in the message.
        min_size: the smallest H and W the module can process.

    Nothing is checked while ``torch.fx`` or ``torch.jit.trace`` traces (proxies have no
    shapes; a traced check would be recorded as a constant).
    """
    if torch.jit.is_tracing() or any(isinstance(t, torch.fx.Proxy) for t in features):
        return
    for t in features:
        if not isinstance(t, Tensor):
            raise TypeError(f"{where} expects tensors, got {type(t).__name__}")
        if t.dim() != 4:
            raise InputShapeError(
                f"{where} expects a 4-D tensor (batch, channels, height, width), "
                f"got shape {tuple(t.shape)}"
                + (" (add a batch dimension with x.unsqueeze(0))" if t.dim() == 3 else "")
            )
    first = features[0]
    for t in features[1:]:
        if t.shape[0] != first.shape[0] or t.shape[2:] != first.shape[2:]:
            raise InputShapeError(
                f"{where} concatenates feature maps on the channel axis, so batch size and "
                f"height/width must agree; got shapes {[tuple(f.shape) for f in features]}"
            )
    channels = sum(t.shape[1] for t in features)
    if channels != expected_channels:
        detail = f" ({' + '.join(str(t.shape[1]) for t in features)})" if len(features) > 1 else ""
        raise InputShapeError(
            f"{where} was built for {expected_channels} input channels, got {channels}{detail}"
        )
    if first.shape[2] < min_size or first.shape[3] < min_size:
        raise InputShapeError(
            f"{where} needs feature maps of at least {min_size}x{min_size}, "
            f"got {first.shape[2]}x{first.shape[3]}"
        )


# Errors of the training side (densenet_edu.data, densenet_edu.train), kept here with the others.
__all__ += ["CheckpointError", "DataError"]


class DataError(ValueError):
    """A dataset is unknown, missing, corrupt, or could not be downloaded."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or belongs to a different model or recipe."""


def describe_unreadable_file(path: str | os.PathLike, err: BaseException) -> str:
    """Why ``torch.load`` could not read ``path``, in words (``err`` is what it raised).

    torch's own exceptions for a bad file are an ``EOFError`` with no text, an
    ``UnpicklingError`` such as ``invalid load key, 'n'`` or a ``RuntimeError`` about a zip
    "central directory"; this turns them into the reason a person can act on.
    """
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as os_err:
        return f"the file cannot be opened ({os_err.strerror or os_err})"
    if size == 0:
        return "the file is empty (0 bytes): an interrupted download or copy?"
    message = str(err).strip()
    if head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip, or its legacy pickle
        if "Unsupported global" in message or "Unsupported class" in message:
            return (
                "it holds pickled Python objects besides tensors, which are refused because "
                "loading them could run code (torch.load(..., weights_only=True)); if you "
                "trust its source, load it yourself with weights_only=False and pass the "
                "state_dict"
            )
        said = message.splitlines()[0].split(". ")[0] if message else type(err).__name__
        return f"the file is truncated or damaged ({size:,} bytes; torch says: {said})"
    text = head.decode("utf-8", "replace").rstrip("\ufffd")  # a character cut at byte 64
    if "\ufffd" not in text and text.strip() and all(c.isprintable() or c.isspace() for c in text):
        snippet = text.splitlines()[0][:40]
        return f"it is a text file (it starts with {snippet!r}), not one written by torch.save"
    return f"it is not a file written by torch.save (it starts with the bytes {head[:8]!r})"
