"""Parameter names and shapes: the learner's ``state_dict`` must be torchvision's.

Names come first because the checkers copy the reference weights into the learner's
module by name; a wrong name is reported with the rename that fixes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from densenet_edu.exercises.mistakes import Mistake
from densenet_edu.exercises.report import call
from densenet_edu.exercises.result import Failure

__all__ = ["ShapeRule", "compare_state_dicts", "load_reference"]

ParamShape = tuple[int, ...]


@dataclass(frozen=True)
class ShapeRule:
    """What a wrong parameter shape tells: when ``applies(key, got, want)``, the ``hint``.

    The hint is formatted with ``got`` and ``want``, the two shapes (``{want[0]}``).
    """

    applies: Callable[[str, ParamShape, ParamShape], bool]
    hint: str


def compare_state_dicts(
    expected: dict[str, Tensor],
    actual: dict[str, Tensor],
    what: str,
    rules: Sequence[ShapeRule] = (),
) -> None:
    """Raise the first difference: a conv bias, then names, then shapes (with the hint
    of the first of ``rules`` that applies)."""
    _no_conv_bias(expected, actual)
    missing = [k for k in expected if k not in actual]
    unexpected = [k for k in actual if k not in expected]
    if missing or unexpected:
        renames = _guess_renames(missing, unexpected, expected, actual)
        lines = [
            f"The parameter names (state_dict keys) of your {what} differ from torchvision's, "
            "so pretrained weights would not load into it."
        ]
        if renames:
            lines.append(
                "Rename: " + ", ".join(f"{old!r} -> {new!r}" for old, new in renames) + "."
            )
        if missing:
            lines.append(f"Missing ({len(missing)}): {_preview(missing)}")
        if unexpected:
            lines.append(f"Unexpected ({len(unexpected)}): {_preview(unexpected)}")
        raise Failure("\n".join(lines), Mistake.WRONG_KEY_NAMES)
    for key, tensor in expected.items():
        if actual[key].shape != tensor.shape:
            got, want = tuple(actual[key].shape), tuple(tensor.shape)
            hint = next((r.hint for r in rules if r.applies(key, got, want)), None)
            hint = hint.format(got=got, want=want) if hint else None
            raise Failure(
                f"{key} has shape {got}, expected {want}." + (f" {hint}" if hint else ""),
                Mistake.WRONG_SHAPE,
            )


def _no_conv_bias(expected: dict[str, Tensor], actual: dict[str, Tensor]) -> None:
    """A bias on a convolution whose weight the reference has (a 4-D weight, no bias)."""
    biases = [
        k
        for k in actual
        if k not in expected
        and k.endswith(".bias")
        and expected.get(k[: -len("bias")] + "weight", torch.empty(0)).dim() == 4
    ]
    if biases:
        conv = biases[0][: -len(".bias")]
        raise Failure(
            f"Your {conv} has a bias ({biases[0]!r}), but DenseNet's convolutions have none: "
            "every convolution is followed, sooner or later, by a BatchNorm that subtracts the "
            "mean and adds its own shift, so a bias would be wasted parameters. "
            f"Build it with nn.Conv2d(..., bias=False).",
            Mistake.BIAS_ON_CONV,
        )


def _guess_renames(
    missing: list[str],
    unexpected: list[str],
    expected: dict[str, Tensor],
    actual: dict[str, Tensor],
) -> list[tuple[str, str]]:
    """Pair missing and unexpected keys with the same leaf name and shape, in order."""
    renames: list[tuple[str, str]] = []
    used: set[str] = set()
    for key in missing:
        leaf = key.rsplit(".", 1)[-1]
        for cand in unexpected:
            if cand in used or cand.rsplit(".", 1)[-1] != leaf:
                continue
            if actual[cand].shape != expected[key].shape:
                continue
            used.add(cand)
            pair = _module_rename(cand.split(".")[:-1], key.split(".")[:-1])
            if pair[0] != pair[1] and pair not in renames:
                renames.append(pair)
            break
    return renames[:6]


def _module_rename(old: list[str], new: list[str]) -> tuple[str, str]:
    """The shortest rename: 'layers.0.norm1' -> 'denselayer1.norm1' becomes
    'layers.0' -> 'denselayer1'."""
    while len(old) > 1 and len(new) > 1 and old[-1] == new[-1]:
        old, new = old[:-1], new[:-1]
    return ".".join(old), ".".join(new)


def _preview(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def load_reference(
    learner: nn.Module, reference: nn.Module, what: str, rules: Sequence[ShapeRule] = ()
) -> None:
    """Check the learner's names and shapes, then copy the reference weights in."""
    state = reference.state_dict()
    compare_state_dicts(state, learner.state_dict(), what, rules)
    call("loading the reference weights into it", learner.load_state_dict, state)
