"""``check_transition``: a transition layer (Section 3, "Pooling layers", "Compression").

Two catalogues: :data:`COMPRESSION_MISTAKES`, the wrong roundings of floor(theta*m), and
:data:`STAGES`, what goes wrong in BN -> ReLU -> 1x1 conv -> 2x2 average pool.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densenet_edu.exercises.harness import (
    ModuleCheck,
    Slip,
    Stage,
    Trace,
    compare_in_both_modes,
    input_of,
    result,
)
from densenet_edu.exercises.mistakes import Mistake
from densenet_edu.exercises.report import build_module, call, expect_class, name_of
from densenet_edu.exercises.result import CheckResult, Failure, run_check
from densenet_edu.exercises.state_dicts import ShapeRule, load_reference
from densenet_edu.exercises.tensors import randomise, shape
from densenet_edu.layers import Transition, compressed_channels

__all__ = ["COMPRESSION_CASES", "COMPRESSION_MISTAKES", "STAGES", "check_transition"]

# (100, 0.29): 0.29 * 100 is 28.999999999999996 in floating point, and floor(theta*m) = 29.
COMPRESSION_CASES: tuple[tuple[int, float], ...] = (
    (15, 0.5),
    (7, 0.5),
    (256, 0.5),
    (10, 0.25),
    (11, 0.25),
    (9, 0.25),
    (12, 1.0),
    (100, 0.29),
)

_SIZE = 9  # odd, so that a pool that keeps the last row and column shows


def check_transition(cls: type[nn.Module]) -> CheckResult:
    """Check a transition layer (Section 3, "Pooling layers" and "Compression").

    The class is built as ``cls(in_channels, compression)`` and must compute
    norm -> ReLU -> 1x1 conv (floor(compression * in_channels) maps, no bias) ->
    2x2 average pool with stride 2. Compression is checked on odd channel counts and
    several thetas, pooling on an odd spatial size (9x9 -> 4x4).
    """

    def body() -> str:
        expect_class(cls, "transition", name_of(cls))
        generator = torch.Generator().manual_seed(2)
        _check_compression(cls, generator)
        _check_config(cls, 15, 0.5, generator)
        return (
            "Your transition matches densenet_edu.Transition: floor(theta*m) output channels "
            f"for {len(COMPRESSION_CASES)} (m, theta) pairs (e.g. 15 -> 7 with theta=0.5), "
            "BN -> ReLU -> 1x1 conv -> 2x2 average pool halving 9x9 to 4x4, and the same "
            "outputs and gradients in train and eval mode."
        )

    return run_check("check_transition", body)


# --------------------------------------------------------------------------- compression


@dataclass(frozen=True)
class CompressionMistake:
    """A wrong channel count: the learner's answers all follow ``channels(m, theta)``."""

    mistake: Mistake
    channels: Callable[[int, float], int]
    explanation: str


# What the chapter on transitions teaches (and densenet_edu.compressed_channels does).
_ROUND_DOWN = (
    "round down, after rounding away floating-point error: "
    "math.floor(round(theta * m, 9)), or densenet_edu.compressed_channels(m, theta)."
)
_ROUNDED = "You rounded to the nearest integer. The paper's transition outputs floor(theta*m) "

COMPRESSION_MISTAKES: tuple[CompressionMistake, ...] = (
    CompressionMistake(
        Mistake.COMPRESSION_CEIL,
        lambda m, t: math.ceil(t * m),
        "You rounded up. The paper's transition outputs floor(theta*m) maps: " + _ROUND_DOWN,
    ),
    CompressionMistake(
        Mistake.COMPRESSION_ROUND, lambda m, t: round(t * m), _ROUNDED + "maps: " + _ROUND_DOWN
    ),
    CompressionMistake(
        Mistake.COMPRESSION_ROUND,
        lambda m, t: math.floor(t * m + 0.5),
        _ROUNDED + "maps: " + _ROUND_DOWN,
    ),
    CompressionMistake(
        Mistake.COMPRESSION_FLOAT_ERROR,
        lambda m, t: math.floor(t * m),
        "You took the floor of the floating-point product: 0.29 * 100 is 28.999999999999996 "
        "in binary floating point, so math.floor (and int()) gives 28 where floor(theta*m) is "
        "29. Round away the floating-point error before the floor: "
        "math.floor(round(theta * m, 9)), or use densenet_edu.compressed_channels(m, theta).",
    ),
    CompressionMistake(
        Mistake.NO_COMPRESSION,
        lambda m, t: m,
        "Your transition keeps all m channels: it ignores the compression factor theta. "
        "It should output floor(theta*m) maps.",
    ),
    CompressionMistake(
        Mistake.IGNORES_THETA,
        lambda m, t: m // 2,
        "Your transition always halves the channels: it ignores the compression factor theta "
        "(0.5 is only the default). Output floor(theta*m) maps.",
    ),
)


def _check_compression(cls: type[nn.Module], generator: torch.Generator) -> None:
    """Build the learner's transition for every (m, theta) and count its output channels."""
    answers: dict[tuple[int, float], int] = {}
    for m, theta in COMPRESSION_CASES:
        module = build_module(cls, (m, theta), "transition").eval()
        x = torch.randn(1, m, 4, 4, generator=generator)
        with torch.no_grad():
            out = call(f"running your transition built with ({m}, {theta})", module, x)
        if not isinstance(out, Tensor) or out.dim() != 4:
            raise Failure(
                f"Your transition returned {type(out).__name__}"
                f"{' of shape ' + shape(out) if isinstance(out, Tensor) else ''}; expected a "
                "4-D tensor (batch, channels, height, width).",
                Mistake.WRONG_SHAPE,
            )
        answers[(m, theta)] = out.shape[1]
    wrong = [c for c in COMPRESSION_CASES if answers[c] != compressed_channels(*c)]
    if not wrong:
        return
    m, theta = wrong[0]
    want = compressed_channels(m, theta)
    first = (
        f"With in_channels={m} and compression={theta} your transition outputs "
        f"{answers[(m, theta)]} channels; floor({theta}*{m}) = floor({theta * m:g}) = {want}."
    )
    for known in COMPRESSION_MISTAKES:
        if all(answers[c] == known.channels(*c) for c in COMPRESSION_CASES):
            raise Failure(f"{first}\n{known.explanation}", known.mistake)
    raise Failure(first, Mistake.WRONG_COMPRESSION)


# --------------------------------------------------------------------------- data flow


def _check_config(cls: type[nn.Module], m: int, theta: float, generator: torch.Generator) -> None:
    reference = randomise(Transition(m, theta), generator)
    learner = build_module(cls, (m, theta), "transition")
    rules = (
        ShapeRule(
            lambda key, got, want: key == "conv.weight" and got[2:] != want[2:],
            "The transition's convolution is 1x1 (kernel_size=1).",
        ),
        ShapeRule(
            lambda key, got, want: key.startswith("norm"),
            f"norm normalises the transition's input, all {m} channels, before the conv.",
        ),
    )
    load_reference(learner, reference, "transition", rules)

    def trace(inputs: list[Tensor], raw: list[Tensor]) -> Trace:
        # BN -> ReLU -> 1x1 conv: (N, m, 9, 9) -> (N, floor(theta*m), 9, 9), then the pool.
        x = inputs[0]
        n = reference.norm(x)
        c = reference.conv(F.relu(n))
        return Trace(
            x=x,
            n=n,
            c=c,
            out=F.avg_pool2d(c, 2, 2),
            conv=reference.conv,
            m=m,
            theta=theta,
            out_channels=compressed_channels(m, theta),
        )

    check = ModuleCheck(
        what="transition",
        learner=learner,
        reference=reference,
        input_shapes=[(2, m, _SIZE, _SIZE)],
        input_names=["the transition's input"],
        takes_list=False,
        watched=("norm",),
        doing="running your transition in {mode} mode",
        trace=trace,
        stages=STAGES,
    )
    compare_in_both_modes(check, generator)


def _output_shape(t: Trace) -> str:
    got = shape(t.result) if t.result is not None else "no tensor"
    return (
        f"Your transition returns shape {got}; with "
        f"in_channels={t.m}, compression={t.theta} and a {_SIZE}x{_SIZE} input it must "
        f"return {shape(t.out)}: floor({t.theta}*{t.m}) = {t.out_channels} channels, "
        f"{_SIZE // 2}x{_SIZE // 2} after the 2x2 average pool with stride 2."
    )


_BN_RELU_CONV_POOL = "BN -> ReLU -> 1x1 conv -> 2x2 average pool"

#: The transition's data flow, stage by stage, each with the mistakes that explain it.
STAGES: tuple[Stage, ...] = (
    Stage(
        "The input of norm",
        expected=lambda t: t.x,
        actual=input_of("norm"),
        slips=(
            Slip(
                Mistake.RELU_BEFORE_BN,
                lambda t: F.relu(t.x),
                "You applied the ReLU before norm (ReLU -> BN -> conv). A "
                f"transition is {_BN_RELU_CONV_POOL}: normalise first, then rectify.",
            ),
        ),
        not_reached="norm is never used: a transition starts with BN -> ReLU.",
    ),
    Stage(
        "Your transition's output",
        expected=lambda t: t.out,
        actual=result,
        slips=(
            Slip(
                Mistake.MAX_POOL,
                lambda t: F.max_pool2d(t.c, 2, 2),
                "You used max pooling. DenseNet's transitions use 2x2 *average* "
                "pooling with stride 2 (nn.AvgPool2d(2, stride=2)): every position of "
                "the compressed maps contributes to the downsampled map.",
            ),
            Slip(
                Mistake.MISSING_RELU,
                lambda t: F.avg_pool2d(t.conv(t.n), 2, 2),
                f"There is no ReLU between norm and conv: a transition is {_BN_RELU_CONV_POOL}.",
            ),
            Slip(
                Mistake.MISSING_BN,
                lambda t: F.avg_pool2d(t.conv(F.relu(t.x)), 2, 2),
                "norm's output is never used: the conv reads the un-normalised "
                f"input. A transition is {_BN_RELU_CONV_POOL}.",
            ),
            Slip(
                Mistake.NO_POOLING,
                lambda t: t.c,
                f"Your transition keeps the {_SIZE}x{_SIZE} size: it must halve "
                "height and width with a 2x2 average pool, stride 2.",
            ),
            Slip(
                Mistake.CEIL_MODE,
                lambda t: F.avg_pool2d(t.c, 2, 2, ceil_mode=True),
                f"Your pooling turns {_SIZE}x{_SIZE} into "
                f"{(_SIZE + 1) // 2}x{(_SIZE + 1) // 2} (ceil_mode=True); DenseNet's "
                f"pool drops the odd last row and column: {_SIZE // 2}x{_SIZE // 2}.",
            ),
            Slip(
                Mistake.POOL_STRIDE,
                lambda t: F.avg_pool2d(t.c, 2, 1),
                f"Your pooling uses stride 1 ({_SIZE}x{_SIZE} -> "
                f"{_SIZE - 1}x{_SIZE - 1}); a transition pools 2x2 with stride 2, "
                "halving height and width.",
            ),
        ),
        shape_message=_output_shape,
    ),
)
