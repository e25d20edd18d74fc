"""``check_dense_layer``: a bottleneck dense layer (DenseNet-B, Section 3).

The layer's data flow is concat -> norm1 -> ReLU -> conv1 (1x1) -> norm2 -> ReLU ->
conv2 (3x3); :data:`STAGES` is the catalogue of what goes wrong at each point of it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densenet_edu.exercises.harness import (
    ModuleCheck,
    Slip,
    Stage,
    Trace,
    compare_in_both_modes,
    first_named,
    input_of,
    result,
)
from densenet_edu.exercises.mistakes import Mistake
from densenet_edu.exercises.report import CHANNEL_AXIS_HINT, build_module, expect_class, name_of
from densenet_edu.exercises.result import CheckResult, Failure, run_check
from densenet_edu.exercises.state_dicts import ParamShape, ShapeRule, load_reference
from densenet_edu.exercises.tensors import close, randomise, shape
from densenet_edu.layers import DenseLayer

__all__ = ["STAGES", "check_dense_layer"]

_SIZE = 8  # height and width of the test feature maps


def check_dense_layer(cls: type[nn.Module]) -> CheckResult:
    """Check a bottleneck dense layer (DenseNet-B, Section 3) against :class:`DenseLayer`.

    The class is built as ``cls(in_channels, growth_rate, bn_size)``; its ``forward``
    receives a list of feature maps ``[x_0, ..., x_{l-1}]`` and must return the
    ``growth_rate`` new maps: concat -> norm1 -> ReLU -> conv1 (1x1, bn_size*k maps) ->
    norm2 -> ReLU -> conv2 (3x3, k maps). The reference weights are copied in, and outputs,
    BatchNorm statistics and gradients are compared in train and eval mode.
    """

    def body() -> str:
        expect_class(cls, "dense layer", name_of(cls))
        generator = torch.Generator().manual_seed(0)
        first_named(
            [
                lambda: _check_config(cls, [6, 3, 3, 3], 3, 2, generator),
                lambda: _check_config(cls, [4, 4, 4], 4, 4, generator),
            ]
        )
        return (
            "Your dense layer matches densenet_edu.DenseLayer: same parameter names and shapes, "
            "same outputs, BatchNorm statistics and gradients in train and eval mode, "
            "on inputs of 3 and 4 feature maps."
        )

    return run_check("check_dense_layer", body)


def _check_config(
    cls: type[nn.Module], widths: list[int], k: int, bn_size: int, generator: torch.Generator
) -> None:
    in_channels = sum(widths)
    reference = randomise(DenseLayer(in_channels, k, bn_size), generator)
    learner = build_module(cls, (in_channels, k, bn_size), "dense layer")
    load_reference(learner, reference, "dense layer", _shape_rules(in_channels, k, bn_size))

    def trace(inputs: list[Tensor], raw: list[Tensor]) -> Trace:
        # concat -> BN-ReLU-1x1 conv -> BN-ReLU-3x3 conv, every (N, C, 8, 8) step kept.
        x = torch.cat(inputs, dim=1)
        n1 = reference.norm1(x)
        r1 = F.relu(n1)
        c1 = reference.conv1(r1)
        n2 = reference.norm2(c1)
        r2 = F.relu(n2)
        same_shapes = len({f.shape for f in raw}) == 1
        return Trace(
            x=x,
            n1=n1,
            r1=r1,
            c1=c1,
            n2=n2,
            r2=r2,
            out=reference.conv2(r2),
            features=raw,
            widths=widths,
            in_channels=in_channels,
            k=k,
            same_shapes=same_shapes,
            batch_concat=torch.cat(raw, dim=0) if same_shapes else None,
        )

    def running_statistics() -> None:
        for name in ("norm1", "norm2"):
            mine = learner.get_submodule(name).running_mean
            if not close(mine, getattr(reference, name).running_mean):
                raise Failure(
                    f"After one training step, {name}.running_mean differs from the "
                    "reference: call each BatchNorm exactly once per forward pass, in "
                    "train mode.",
                    Mistake.WRONG_RUNNING_STATS,
                )

    check = ModuleCheck(
        what="layer",
        learner=learner,
        reference=reference,
        input_shapes=[(2, w, _SIZE, _SIZE) for w in widths],
        input_names=[f"the input feature map x_{i}" for i in range(len(widths))],
        takes_list=True,
        watched=("norm1", "conv1", "norm2", "conv2"),
        doing=f"running your layer in {{mode}} mode on a list of {len(widths)} feature maps",
        trace=trace,
        stages=STAGES,
        train_checks=running_statistics,
    )
    compare_in_both_modes(check, generator)


def _shape_rules(in_channels: int, k: int, bn_size: int) -> tuple[ShapeRule, ...]:
    """What a wrong shape of each parameter means, first match wins."""
    width = bn_size * k

    def kernel(key: str) -> Callable[[str, ParamShape, ParamShape], bool]:
        return lambda name, got, want: name == key and got[2:] != want[2:]

    return (
        ShapeRule(
            lambda key, got, want: key.startswith("norm1"),
            f"norm1 normalises the layer's input, the concatenation of all earlier maps "
            f"({in_channels} channels): BN comes *before* the convolution (BN-ReLU-conv).",
        ),
        ShapeRule(
            kernel("conv1.weight"), "conv1 is the 1x1 bottleneck convolution: kernel_size=1."
        ),
        ShapeRule(
            lambda key, got, want: key == "conv1.weight" and got[0] != want[0],
            f"conv1 produces bn_size * growth_rate = {bn_size}*{k} = {width} maps "
            "(the bottleneck width).",
        ),
        ShapeRule(
            lambda key, got, want: key == "conv1.weight",
            f"conv1 reads all {in_channels} input channels.",
        ),
        ShapeRule(
            lambda key, got, want: key.startswith("norm2"),
            f"norm2 normalises conv1's output, {width} channels.",
        ),
        ShapeRule(
            kernel("conv2.weight"), "conv2 is the 3x3 convolution (kernel_size=3, padding=1)."
        ),
        ShapeRule(
            lambda key, got, want: key == "conv2.weight",
            f"conv2 turns the {width} bottleneck maps into growth_rate = {k} new maps.",
        ),
    )


def _output_shape(t: Trace) -> str:
    got = shape(t.result) if t.result is not None else "?"
    return (
        f"Your layer returns shape {got}, expected {shape(t.out)}: growth_rate = {t.k} new "
        f"maps of the input's {_SIZE}x{_SIZE} size (conv2 needs padding=1)."
    )


#: The layer's data flow, stage by stage, each with the mistakes that explain a difference.
STAGES: tuple[Stage, ...] = (
    Stage(
        "The input of norm1",
        expected=lambda t: t.x,
        actual=input_of("norm1"),
        slips=(
            Slip(
                Mistake.CONCAT_WRONG_DIM,
                lambda t: t.batch_concat,
                lambda t: (
                    "You concatenated the feature maps along dimension 0, the batch "
                    f"axis: norm1 received {shape(t.batch_concat)} instead of {shape(t.x)}. "
                    + CHANNEL_AXIS_HINT
                ),
            ),
            Slip(
                Mistake.RELU_BEFORE_BN,
                lambda t: F.relu(t.x),
                "You applied the ReLU before norm1 (ReLU -> BN -> conv). DenseNet's "
                "composite function is BN -> ReLU -> conv: normalise the "
                "concatenated input with norm1, then apply the ReLU, then conv1.",
            ),
            Slip(
                Mistake.ADDED_INSTEAD_OF_CONCAT,
                lambda t: torch.stack(t.features).sum(0) if t.same_shapes else None,
                lambda t: (
                    "You added the feature maps instead of concatenating them. "
                    f"norm1 received {shape(t.features[0])}, but the layer's input is "
                    f"the concatenation torch.cat(features, dim=1) of shape {shape(t.x)}: "
                    "DenseNet keeps every earlier map as separate channels."
                ),
            ),
            Slip(
                Mistake.WRONG_CONCAT_ORDER,
                lambda t: torch.cat(t.features[::-1], dim=1),
                "You concatenated the feature maps in reverse order. Keep the order "
                "in which they were made, [x_0, x_1, ..., x_{l-1}]: each channel of "
                "norm1 and conv1 belongs to one input map, so trained weights only "
                "fit that order.",
            ),
            Slip(
                Mistake.BN_ON_LAST_FEATURE,
                lambda t: t.features[-1],
                lambda t: (
                    f"norm1 should normalise the concatenated input ({t.in_channels} "
                    f"channels), you normalised only the last feature map ({t.widths[-1]} "
                    "channels). Concatenate first: torch.cat(features, dim=1)."
                ),
            ),
            Slip(
                Mistake.BN_ON_FIRST_FEATURE,
                lambda t: t.features[0],
                lambda t: (
                    f"norm1 should normalise the concatenated input ({t.in_channels} "
                    f"channels), you normalised only the first feature map "
                    f"({t.widths[0]} channels)."
                ),
            ),
        ),
        not_reached="norm1 is never used in your forward pass: the layer starts "
        "with BN -> ReLU on the concatenated input.",
    ),
    Stage(
        "The input of conv1",
        expected=lambda t: t.r1,
        actual=input_of("conv1"),
        slips=(
            Slip(
                Mistake.MISSING_RELU,
                lambda t: t.n1,
                "There is no ReLU between norm1 and conv1: the composite function "
                "is BN -> ReLU -> conv. conv1 received negative values.",
            ),
            Slip(
                Mistake.BN_OUTPUT_UNUSED,
                lambda t: t.x,
                "conv1 reads the raw concatenated input: the output of norm1 is "
                "never used. Feed norm1's output (after the ReLU) to conv1.",
            ),
            Slip(
                Mistake.BN_OUTPUT_UNUSED,
                lambda t: F.relu(t.x),
                "conv1 reads ReLU(input) without the BatchNorm: norm1's output "
                "is never used. The order is norm1 -> ReLU -> conv1.",
            ),
        ),
        not_reached="conv1 is never used in your forward pass.",
    ),
    Stage(
        "The input of norm2",
        expected=lambda t: t.c1,
        actual=input_of("norm2"),
        slips=(
            Slip(
                Mistake.RELU_BEFORE_BN,
                lambda t: F.relu(t.c1),
                "You applied the ReLU before norm2 (ReLU -> BN -> conv). After the "
                "1x1 bottleneck the order is again BN -> ReLU -> conv: norm2 "
                "normalises conv1's output, then the ReLU, then conv2.",
            ),
        ),
        not_reached="norm2 is never used: the bottleneck is "
        "BN-ReLU-1x1 conv, then BN-ReLU-3x3 conv.",
        value_hint="norm2 should normalise conv1's output.",
    ),
    Stage(
        "The input of conv2",
        expected=lambda t: t.r2,
        actual=input_of("conv2"),
        slips=(
            Slip(
                Mistake.MISSING_RELU,
                lambda t: t.n2,
                "There is no ReLU between norm2 and conv2: after the 1x1 "
                "bottleneck comes BN -> ReLU -> 3x3 conv.",
            ),
            Slip(
                Mistake.BN_OUTPUT_UNUSED,
                lambda t: t.c1,
                "conv2 reads conv1's output directly: norm2's output is never used.",
            ),
            Slip(
                Mistake.BN_OUTPUT_UNUSED,
                lambda t: F.relu(t.c1),
                "conv2 reads ReLU(conv1's output) without norm2: norm2's output is never used.",
            ),
        ),
        not_reached="conv2 is never used in your forward pass.",
    ),
    Stage(
        "Your layer's output",
        expected=lambda t: t.out,
        actual=result,
        slips=(
            Slip(
                Mistake.RETURNED_CONCAT,
                lambda t: torch.cat([t.x, t.out], dim=1),
                lambda t: (
                    f"Your layer returned {t.in_channels + t.k} channels: its input "
                    f"concatenated with the {t.k} new maps. A dense layer returns only its "
                    f"growth_rate = {t.k} new feature maps; the dense block does the "
                    "concatenating."
                ),
            ),
            Slip(
                Mistake.EXTRA_RELU,
                lambda t: F.relu(t.out),
                "Your layer applies a ReLU after conv2. A dense layer ends with the "
                "3x3 convolution; the next layer starts with its own BN -> ReLU.",
            ),
        ),
        shape_message=_output_shape,
    ),
)
