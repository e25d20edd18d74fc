"""``check_dense_block``: a dense block (Section 3, Eq. 2).

Layer l of a block receives [x_0, ..., x_{l-1}] and the block returns [x_0, ..., x_L];
:func:`stages` is the catalogue of what goes wrong at each layer's input and at the
block's output, :data:`WIDTH_MISTAKES` the catalogue of wrongly built layers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from densenet_edu.exercises.harness import (
    ModuleCheck,
    Slip,
    Stage,
    Trace,
    compare_in_both_modes,
    first_named,
    input_of,
    output_of,
    result,
)
from densenet_edu.exercises.mistakes import Mistake
from densenet_edu.exercises.report import CHANNEL_AXIS_HINT, build_module, expect_class, name_of
from densenet_edu.exercises.result import CheckResult, Failure, run_check
from densenet_edu.exercises.state_dicts import load_reference
from densenet_edu.exercises.tensors import randomise, shape
from densenet_edu.layers import DenseBlock

__all__ = ["WIDTH_MISTAKES", "check_dense_block", "stages"]


def check_dense_block(cls: type[nn.Module]) -> CheckResult:
    """Check a dense block (Section 3, Eq. 2) against :class:`DenseBlock`.

    The class is built as ``cls(num_layers, in_channels, growth_rate, bn_size)`` and must
    hold its layers as ``denselayer1``, ``denselayer2``, ... (use ``densenet_edu.DenseLayer``
    or your own). Layer l must receive the concatenation [x_0, ..., x_{l-1}] (as a list or
    one tensor), and the block must return [x_0, x_1, ..., x_L] concatenated, in that order.
    Forward and backward are compared in train and eval mode.
    """

    def body() -> str:
        expect_class(cls, "dense block", name_of(cls))
        generator = torch.Generator().manual_seed(1)
        first_named(
            [
                lambda: _check_config(cls, 3, 64, 4, 4, generator),
                lambda: _check_config(cls, 3, 4, 4, 2, generator),
            ]
        )
        return (
            "Your dense block matches densenet_edu.DenseBlock: every layer sees all earlier "
            "feature maps in order, the block returns k0 + L*k channels (64 + 3*4 = 76 in the "
            "test), and outputs and gradients agree in train and eval mode."
        )

    return run_check("check_dense_block", body)


def _check_config(
    cls: type[nn.Module],
    num_layers: int,
    k0: int,
    k: int,
    bn_size: int,
    generator: torch.Generator,
) -> None:
    reference = randomise(DenseBlock(num_layers, k0, k, bn_size), generator)
    learner = build_module(cls, (num_layers, k0, k, bn_size), "dense block")
    _check_layer_widths(learner.state_dict(), num_layers, k0, k)
    load_reference(learner, reference, "dense block")

    def trace(inputs: list[Tensor], raw: list[Tensor]) -> Trace:
        # Eq. 2: x_l = H_l([x_0, ..., x_{l-1}]); features holds x_0 ... x_L, (N, k0 or k, 8, 8).
        features = [inputs[0]]
        for layer in reference.values():
            features.append(layer(features))
        return Trace(
            features=features,
            out=torch.cat(features, dim=1),
            k0=k0,
            k=k,
            num_layers=num_layers,
            # x_0 added to the new maps, like a ResNet shortcut, is possible only when k0 == k.
            shortcut=k0 == k,
        )

    check = ModuleCheck(
        what="block",
        learner=learner,
        reference=reference,
        input_shapes=[(2, k0, 8, 8)],
        input_names=["the block's input"],
        takes_list=False,
        watched=[f"denselayer{n}" for n in range(1, num_layers + 1)],
        doing="running your block in {mode} mode",
        trace=trace,
        stages=stages(num_layers),
    )
    compare_in_both_modes(check, generator)


# --------------------------------------------------------------------------- layer widths


@dataclass(frozen=True)
class WidthMistake:
    """Layers built for the wrong input widths: ``width(k0, k, l)`` for layer l (1-based)."""

    mistake: Mistake
    width: Callable[[int, int, int], int]
    explanation: str


WIDTH_MISTAKES: tuple[WidthMistake, ...] = (
    WidthMistake(
        Mistake.OFF_BY_ONE,
        lambda k0, k, n: k0 + k * n,
        "You built layer l for k0 + k*l channels (off by one): the first layer "
        "sees only the block's input, k0 channels.",
    ),
    WidthMistake(
        Mistake.WRONG_LAYER_WIDTH,
        lambda k0, k, n: k0,
        "Every layer is built for k0 channels, but the input grows by k channels "
        "per layer because each layer also sees all earlier outputs.",
    ),
)


def _check_layer_widths(sd: dict[str, Tensor], num_layers: int, k0: int, k: int) -> None:
    """Name a wrong number of layers or wrong layer widths before the generic key check."""
    layers = sorted({int(m[1]) for key in sd if (m := re.match(r"denselayer(\d+)\.", key))})
    if not layers:
        return
    if len(layers) != num_layers:
        raise Failure(
            f"Your block has {len(layers)} dense layers; built with num_layers={num_layers} it "
            f"must have {num_layers} (denselayer1 ... denselayer{num_layers}).",
            Mistake.WRONG_NUM_LAYERS,
        )
    widths = [
        sd[f"denselayer{n}.norm1.weight"].shape[0]
        for n in layers
        if f"denselayer{n}.norm1.weight" in sd
    ]
    numbers = range(1, num_layers + 1)
    want = [k0 + k * (n - 1) for n in numbers]
    if len(widths) != num_layers or widths == want:
        return
    bad = next(n for n, (w, e) in enumerate(zip(widths, want, strict=True), 1) if w != e)
    first = (
        f"denselayer{bad} is built for {widths[bad - 1]} input channels; in a block with "
        f"k0={k0} and k={k} it receives k0 + k*({bad} - 1) = {want[bad - 1]}."
    )
    for known in WIDTH_MISTAKES:
        if widths == [known.width(k0, k, n) for n in numbers]:
            raise Failure(f"{first}\n{known.explanation}", known.mistake)
    raise Failure(first, Mistake.WRONG_LAYER_WIDTH)


# --------------------------------------------------------------------------- data flow

_SHORTCUT = (
    "You added the block's input x_0 to the new feature maps, like a ResNet "
    "shortcut. A dense block adds nothing: x_0 already reaches every layer and the "
    "block's output through the concatenation. Keep each layer's k new maps as they "
    "are and concatenate: [x_0, x_1, ..., x_L]."
)


def _with_shortcut(maps: list[Tensor]) -> Tensor:
    """[x_0, x_1 + x_0, x_2 + x_0, ...] concatenated: the ResNet habit."""
    return torch.cat([maps[0]] + [f + maps[0] for f in maps[1:]], dim=1)


def _same_shapes(maps: list[Tensor]) -> bool:
    return len({f.shape for f in maps}) == 1


def _layer_input_slips(n: int, name: str) -> tuple[Slip, ...]:
    """What layer ``n`` (1-based, n >= 2) receives when the wiring is wrong."""

    def before(t: Trace) -> list[Tensor]:
        return t.features[:n]

    return (
        Slip(
            Mistake.ADDS_BLOCK_INPUT,
            lambda t: _with_shortcut(before(t)) if t.shortcut else None,
            f"{name} received x_0 added to the earlier layers' outputs. " + _SHORTCUT,
        ),
        Slip(
            Mistake.ADDED_INSTEAD_OF_CONCAT,
            lambda t: torch.stack(before(t)).sum(0) if _same_shapes(before(t)) else None,
            lambda t: (
                f"{name} received the *sum* of the earlier feature maps. You added "
                "the features instead of concatenating them: layer l must see "
                f"[x_0, ..., x_(l-1)] side by side, k0 + k*(l-1) = "
                f"{t.k0 + t.k * (n - 1)} channels (torch.cat(features, dim=1))."
            ),
        ),
        Slip(
            Mistake.WRONG_CONCAT_ORDER,
            lambda t: torch.cat(before(t)[::-1], dim=1),
            f"{name} received the earlier feature maps in reverse order. Keep "
            "the order in which they were made, [x_0, x_1, ..., x_(l-1)]: the "
            "weights of each layer belong to fixed input channels.",
        ),
        Slip(
            Mistake.CHAIN_NOT_DENSE,
            lambda t: before(t)[-1],
            lambda t: (
                f"{name} received only the previous layer's output ({t.k} channels), "
                "as in a plain chain of layers. In a dense block layer l sees "
                f"every earlier feature map: k0 + k*(l-1) = {t.k0 + t.k * (n - 1)} "
                "channels."
            ),
        ),
        Slip(
            Mistake.ONLY_BLOCK_INPUT,
            lambda t: before(t)[0],
            f"{name} received only the block's input x_0. Layer l must also "
            "see the outputs of all earlier layers.",
        ),
    )


def _layer_stages(n: int) -> tuple[Stage, Stage]:
    """Layer ``n``'s input (the concatenation so far) and its output."""
    name = f"denselayer{n}"
    return (
        Stage(
            f"The input of {name}",
            expected=lambda t: torch.cat(t.features[:n], dim=1),
            actual=input_of(name),
            slips=_layer_input_slips(n, name) if n >= 2 else (),
            not_reached=f"{name} is never called in your forward pass.",
        ),
        Stage(
            f"The output of {name}",
            expected=lambda t: t.features[n],
            actual=output_of(name),
            value_mistake=Mistake.LAYER_DIFFERS,
            value_hint=f"{name} got the right input, so the layer itself differs "
            "from densenet_edu.DenseLayer: check it with check_dense_layer.",
        ),
    )


def _width(t: Trace) -> str:
    """The block's output width against k0 + L*k, the start of several diagnoses."""
    r = t.result
    got = r.shape[1] if r is not None and r.dim() == 4 else None
    return (
        f"Your block returns {got} channels; a block with k0={t.k0}, k={t.k} and "
        f"{t.num_layers} layers must return {t.k0} + {t.num_layers}*{t.k} = "
        f"{t.k0 + t.num_layers * t.k}. "
    )


_OUTPUT_SLIPS: tuple[Slip, ...] = (
    Slip(
        Mistake.ADDS_BLOCK_INPUT,
        lambda t: _with_shortcut(t.features) if t.shortcut else None,
        _SHORTCUT,
    ),
    Slip(
        Mistake.CONCAT_WRONG_DIM,
        lambda t: torch.cat(t.features, dim=0) if _same_shapes(t.features) else None,
        "Your block concatenates its feature maps along dimension 0, the "
        "batch axis. " + CHANNEL_AXIS_HINT,
    ),
    Slip(
        Mistake.MISSING_BLOCK_INPUT,
        lambda t: torch.cat(t.features[1:], dim=1),
        lambda t: (
            _width(t) + "You left out the block's input x_0: the block returns "
            "[x_0, x_1, ..., x_L] concatenated."
        ),
    ),
    Slip(
        Mistake.ONLY_LAST_LAYER,
        lambda t: t.features[-1],
        lambda t: (
            _width(t) + "You returned only the last layer's output; the block "
            "returns everything it holds, [x_0, x_1, ..., x_L] concatenated."
        ),
    ),
    Slip(
        Mistake.MISSING_LAST_LAYER,
        lambda t: torch.cat(t.features[:-1], dim=1),
        lambda t: _width(t) + "You left out the last layer's output x_L.",
    ),
    Slip(
        Mistake.WRONG_CONCAT_ORDER,
        lambda t: torch.cat(t.features[::-1], dim=1),
        "Your block returns the feature maps in reverse order; return "
        "[x_0, x_1, ..., x_L] in the order they were made.",
    ),
)


def stages(num_layers: int) -> tuple[Stage, ...]:
    """The block's data flow: each layer's input and output, then the block's output."""
    per_layer = [stage for n in range(1, num_layers + 1) for stage in _layer_stages(n)]
    output = Stage(
        "Your block's output",
        expected=lambda t: t.out,
        actual=result,
        slips=_OUTPUT_SLIPS,
        shape_message=lambda t: (
            _width(t)
            + f"(expected shape {shape(t.out)}, got "
            + f"{shape(t.result) if t.result is not None else 'no tensor'})."
        ),
    )
    return (*per_layer, output)
