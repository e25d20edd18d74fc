"""Learner errors: how an exception raised by the learner's code becomes a diagnosis.

The learner sees their own exception, the line of *their* code it came from (never the
checker's or torch's internals) and, for errors a DenseNet beginner typically meets, a
hint that names the mistake (:data:`ERROR_HINTS`).
"""

from __future__ import annotations

import os
import re
import sysconfig
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from densenet_edu.exercises.mistakes import Mistake
from densenet_edu.exercises.result import Failure

__all__ = [
    "CHANNEL_AXIS_HINT",
    "ERROR_HINTS",
    "build_module",
    "call",
    "expect_class",
    "learner_error",
    "name_of",
]

# Frames in these folders are not the learner's: torch, all of densenet_edu, the stdlib.
_INTERNAL_DIRS = tuple(
    os.path.realpath(path) + os.sep
    for path in (
        os.path.dirname(torch.__file__),
        str(Path(__file__).resolve().parents[1]),
        sysconfig.get_paths()["stdlib"],
    )
)

CHANNEL_AXIS_HINT = (
    "Feature maps are stacked side by side along the channel axis, dim=1 of "
    "(batch, channels, height, width): torch.cat(features, dim=1)."
)


@dataclass(frozen=True)
class ErrorHint:
    """A known error text, the hint it earns, and the mistake it proves.

    A mistake other than ``RAISED`` names the mistake outright, so the checkers report
    it instead of trying further configurations.
    """

    pattern: str
    hint: Callable[[re.Match[str]], str]
    mistake: Mistake = Mistake.RAISED


ERROR_HINTS: tuple[ErrorHint, ...] = (
    ErrorHint(
        r"Sizes of tensors must match except in dimension ([023])\b",
        lambda m: (
            f"You concatenated along dimension {m[1]}"
            + (", the batch axis" if m[1] == "0" else ", a spatial axis")
            + ", so torch.cat found maps of different widths there. "
            + CHANNEL_AXIS_HINT
        ),
        Mistake.CONCAT_WRONG_DIM,
    ),
    ErrorHint(
        r"'(list|tuple)' object has no attribute|must be Tensor, not (list|tuple)"
        r"|got \((list|tuple),",
        lambda m: (
            "Your forward treats its argument as one tensor, but a dense layer receives a "
            "*list* of feature maps [x_0, ..., x_{l-1}]. Concatenate the list first, "
            "x = torch.cat(features, dim=1), and run norm1 on x."
        ),
        Mistake.LIST_NOT_CONCATENATED,
    ),
    ErrorHint(
        r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) "
        r"at non-singleton dimension 1",
        lambda m: (
            f"You added feature maps with {m[1]} and {m[2]} channels. DenseNet does not "
            "add feature maps, it concatenates them along the channel axis: "
            "torch.cat(features, dim=1)."
        ),
    ),
    ErrorHint(
        r"running_mean should contain (\d+) elements not (\d+)",
        lambda m: (
            f"A BatchNorm built for {m[2]} channels received a tensor with {m[1]} "
            "channels. Check which tensor you normalise: norm1 normalises the concatenation of "
            "all the input feature maps."
        ),
    ),
    ErrorHint(
        r"expected input\[[^\]]*\] to have (\d+) channels, but got (\d+) channels",
        lambda m: (
            f"A convolution built for {m[1]} input channels received {m[2]}. "
            "Follow the channel count through your forward pass."
        ),
    ),
    ErrorHint(
        r"a leaf Variable that requires grad is being used in an in-place operation",
        lambda m: (
            "Your code changed an input tensor in place (an in-place ReLU on the input?). "
            "Earlier feature maps are shared by every later layer and must not be modified."
        ),
    ),
)


def _is_internal(filename: str) -> bool:
    return os.path.realpath(filename).startswith(_INTERNAL_DIRS)


def _learner_frame(exc: BaseException) -> str:
    """The learner's line that led to ``exc``: the deepest frame outside torch and this package."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not _is_internal(f.filename)]
    if not frames:
        return ""
    frame = frames[-1]
    where = f'File "{frame.filename}", line {frame.lineno}, in {frame.name}'
    line = (frame.line or "").strip()
    return f"in your code:\n  {where}\n    {line}" if line else f"in your code:\n  {where}"


def learner_error(exc: BaseException, doing: str) -> Failure:
    """The diagnosis of ``exc``, raised by the learner's code while ``doing`` something."""
    if isinstance(exc, NotImplementedError):
        message = (
            f"Your code raised NotImplementedError while {doing}: a TODO is still open. "
            "Replace `raise NotImplementedError` with your implementation."
        )
        return Failure(message, Mistake.NOT_IMPLEMENTED, _learner_frame(exc))
    text = str(exc).strip() or "(no message)"
    message = f"Your code raised {type(exc).__name__} while {doing}:\n{text}"
    mistake = Mistake.RAISED
    for known in ERROR_HINTS:
        match = re.search(known.pattern, text)
        if match:
            message += f"\nHint: {known.hint(match)}"
            mistake = known.mistake
            break
    return Failure(message, mistake, _learner_frame(exc))


def call(doing: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, the learner's code; an exception becomes the learner's error."""
    try:
        return fn(*args)
    except Exception as exc:  # the learner's code may raise anything
        raise learner_error(exc, doing) from None


def name_of(obj: Any) -> str:
    return getattr(obj, "__name__", type(obj).__name__)


def build_module(cls: Any, args: tuple[Any, ...], what: str) -> nn.Module:
    """``cls(*args)``, checked to be an ``nn.Module``; ``what`` names it ("dense layer")."""
    text = f"{name_of(cls)}({', '.join(map(repr, args))})"
    module = call(f"building your {what} with {text}", cls, *args)
    if not isinstance(module, nn.Module):
        raise Failure(
            f"{text} returned a {type(module).__name__}, not a torch.nn.Module. "
            f"Make your {what} a subclass of nn.Module (and call super().__init__()).",
            Mistake.NOT_A_MODULE,
        )
    return module


def expect_class(cls: Any, what: str, example: str) -> None:
    """The checkers build the learner's module several times: they need the class."""
    if isinstance(cls, nn.Module):
        raise Failure(
            f"Pass the class itself, not an instance: {example}, not {example}(...). "
            f"The checker builds your {what} several times with different arguments.",
            Mistake.WRONG_ARGUMENT,
        )
    if not callable(cls):
        raise Failure(
            f"Expected your {what} class, got {type(cls).__name__} {cls!r}.",
            Mistake.WRONG_ARGUMENT,
        )
