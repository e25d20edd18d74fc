"""``check_channel_count``: the channel arithmetic of a dense block (Section 3, "Growth rate").

The learner's formulas are evaluated on many (k0, k, l); when all their answers follow a
known wrong formula, the catalogue (:data:`LAYER_MISTAKES`, :data:`BLOCK_MISTAKES`) names it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from densenet_edu.exercises.mistakes import Mistake
from densenet_edu.exercises.report import call
from densenet_edu.exercises.result import CheckResult, Failure, run_check

__all__ = ["BLOCK_MISTAKES", "CASES", "LAYER_MISTAKES", "FormulaMistake", "check_channel_count"]

Formula = Callable[[int, int, int], int]

#: (k0, k, l): the first three are the ones a learner checks by hand first.
CASES: tuple[tuple[int, int, int], ...] = ((64, 32, 1), (64, 32, 2), (64, 32, 3)) + tuple(
    (k0, k, n) for k0 in (64, 16, 24, 3) for k in (32, 12, 4, 48) for n in (1, 2, 5, 6, 12, 24)
)


@dataclass(frozen=True)
class FormulaMistake:
    """A known wrong formula and what it gets wrong."""

    formula: Formula
    mistake: Mistake
    explanation: str


LAYER_MISTAKES: tuple[FormulaMistake, ...] = (
    FormulaMistake(
        lambda k0, k, n: k0 + k * n,
        Mistake.OFF_BY_ONE,
        "You also counted layer l's own k output maps (k0 + k*l). Layer l sees the block "
        "input and the outputs of the l - 1 layers *before* it: k0 + k*(l - 1).",
    ),
    FormulaMistake(
        lambda k0, k, n: k0 + k * (n - 2),
        Mistake.OFF_BY_ONE,
        "You counted one earlier layer too few (k0 + k*(l - 2)): layer l sees the outputs of "
        "all l - 1 layers before it, k0 + k*(l - 1).",
    ),
    FormulaMistake(
        lambda k0, k, n: k * (n - 1),
        Mistake.MISSING_K0,
        "You left out the block's input: every layer also sees the k0 maps the block started "
        "with, so it is k0 + k*(l - 1).",
    ),
    FormulaMistake(
        lambda k0, k, n: k * n,
        Mistake.MISSING_K0,
        "You computed k*l: that leaves out the block's k0 input maps and counts layer l's own "
        "output. Layer l sees k0 + k*(l - 1).",
    ),
)

BLOCK_MISTAKES: tuple[FormulaMistake, ...] = (
    FormulaMistake(
        lambda k0, k, n: k0 + k * (n - 1),
        Mistake.MISSING_LAST_LAYER,
        "That is the input width of the *last* layer, k0 + k*(L - 1). The block's output also "
        "contains the last layer's own k maps: k0 + k*L.",
    ),
    FormulaMistake(
        lambda k0, k, n: k0 + k * (n + 1),
        Mistake.OFF_BY_ONE,
        "You counted one layer too many: L layers add k maps each, k0 + k*L.",
    ),
    FormulaMistake(
        lambda k0, k, n: k * n,
        Mistake.MISSING_BLOCK_INPUT,
        "You left out the block's input x_0: a dense block returns the concatenation of its "
        "input and all L new outputs, k0 + k*L.",
    ),
    FormulaMistake(
        lambda k0, k, n: k,
        Mistake.ONLY_LAST_LAYER,
        "That is only the last layer's output. A dense block returns every feature map it holds "
        "(input and all L layers' outputs): k0 + k*L.",
    ),
)


def check_channel_count(
    layer_in_channels: Formula,
    block_out_channels: Formula | None = None,
) -> CheckResult:
    """Check channel-count formulas of a dense block (Section 3, "Growth rate").

    Args:
        layer_in_channels: ``f(k0, k, l) -> int``, the channels that layer ``l`` (1-based)
            of a block with ``k0`` input channels and growth rate ``k`` receives.
        block_out_channels: optional ``g(k0, k, num_layers) -> int``, the channels the block
            returns.

    Both are compared with the paper's formulas, k0 + k(l - 1) and k0 + k L, on many
    (k0, k, l); a failure names the formula the learner's answers follow when it is a
    known mistake.
    """

    def body() -> str:
        _check_formula(
            layer_in_channels,
            "layer_in_channels",
            lambda k0, k, n: k0 + k * (n - 1),
            LAYER_MISTAKES,
            "layer {n} of a block with k0={k0} and k={k} sees {k0} + {k}*({n} - 1) = {want} "
            "channels",
        )
        checked = "layer_in_channels"
        if block_out_channels is not None:
            _check_formula(
                block_out_channels,
                "block_out_channels",
                lambda k0, k, n: k0 + k * n,
                BLOCK_MISTAKES,
                "a block with k0={k0}, k={k} and {n} layers returns {k0} + {n}*{k} = {want} "
                "channels",
            )
            checked += " and block_out_channels"
        verb = "agree" if block_out_channels is not None else "agrees"
        return (
            f"{checked} {verb} with the paper on {len(CASES)} combinations of "
            "(k0, k, l): layer l sees k0 + k(l - 1) channels"
            + (", a block of L layers returns k0 + kL." if block_out_channels else ".")
        )

    return run_check("check_channel_count", body)


def _answers(fn: Formula, name: str) -> dict[tuple[int, int, int], int]:
    """The learner's answer for every case, each checked to be an int."""
    if not callable(fn):
        raise Failure(
            f"{name} should be a function, got {type(fn).__name__}.", Mistake.WRONG_ARGUMENT
        )
    answers: dict[tuple[int, int, int], int] = {}
    for case in CASES:
        k0, k, n = case
        value: Any = call(f"computing {name}({k0}, {k}, {n})", fn, k0, k, n)
        if isinstance(value, bool) or not isinstance(value, int):
            is_whole_float = isinstance(value, float) and value.is_integer()
            hint = " Use integer arithmetic (// rather than /)." if is_whole_float else ""
            raise Failure(
                f"{name}({k0}, {k}, {n}) returned {value!r} ({type(value).__name__}); "
                f"a number of channels is an int.{hint}",
                Mistake.WRONG_TYPE,
            )
        answers[case] = value
    return answers


def _check_formula(
    fn: Formula,
    name: str,
    correct: Formula,
    mistakes: Sequence[FormulaMistake],
    sentence: str,
) -> None:
    """Raise the first case ``fn`` gets wrong, naming the known formula it follows."""
    answers = _answers(fn, name)
    wrong = [case for case, value in answers.items() if value != correct(*case)]
    if not wrong:
        return
    k0, k, n = wrong[0]
    want = correct(k0, k, n)
    first = (
        f"{name}({k0}, {k}, {n}) returned {answers[wrong[0]]}, but "
        + sentence.format(k0=k0, k=k, n=n, want=want)
        + "."
    )
    for known in mistakes:
        if all(answers[case] == known.formula(*case) for case in CASES):
            raise Failure(f"{first}\n{known.explanation}", known.mistake)
    raise Failure(f"{first}\n{len(wrong)} of {len(CASES)} cases differ.", Mistake.WRONG_VALUE)
