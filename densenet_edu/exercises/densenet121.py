"""``check_densenet121``: a whole DenseNet-121 (Table 1) against :func:`densenet121`.

The model is compared in eval mode, stage by stage, along :data:`FEATURE_STAGES`; the
catalogue of mistakes of each stage is in :data:`STAGES`.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densenet_edu.analysis import count_parameters
from densenet_edu.exercises.harness import (
    Slip,
    Stage,
    Trace,
    check_deterministic,
    compare_stages,
    input_of,
    output_of,
    record,
    result,
)
from densenet_edu.exercises.mistakes import Mistake
from densenet_edu.exercises.report import build_module
from densenet_edu.exercises.result import CheckResult, Failure, run_check
from densenet_edu.exercises.state_dicts import ShapeRule, load_reference
from densenet_edu.exercises.tensors import as_tensor, close, randomise
from densenet_edu.model import densenet121

__all__ = ["FEATURE_STAGES", "STAGES", "check_densenet121"]

#: The children of ``features`` compared one by one, after the stem.
FEATURE_STAGES = (
    "denseblock1",
    "transition1",
    "denseblock2",
    "transition2",
    "denseblock3",
    "transition3",
    "denseblock4",
    "norm5",
)
_LAYERS = (6, 12, 24, 16)  # dense layers per block (Table 1)


def check_densenet121(model_or_factory: nn.Module | Callable[[], nn.Module]) -> CheckResult:
    """Check a whole DenseNet-121 (Table 1) against :func:`densenet_edu.densenet121`.

    Args:
        model_or_factory: the learner's model, or a callable with no arguments returning
            one (its class, or a function). A model passed in is copied, not modified.

    The reference is ``densenet121()`` with a fixed seed (and non-trivial BatchNorm
    statistics); its weights are loaded into the learner's model, which must use
    torchvision's names. A 1x3x64x64 image then goes through both in eval mode and the
    outputs are compared stage by stage: stem, each block, each transition, norm5, the
    pooled features and the logits. The first stage that differs is reported.
    """

    def body() -> str:
        model = _get_model(model_or_factory)
        generator = torch.Generator().manual_seed(3)
        reference = _reference()
        _check_block_lengths(model.state_dict())
        load_reference(model, reference, "DenseNet-121", SHAPE_RULES)
        reference.eval()
        model.eval()
        _compare(model, reference, generator)
        return (
            "Your DenseNet-121 matches densenet_edu.densenet121() stage by stage (stem, 4 dense "
            "blocks, 3 transitions, norm5, pooling, classifier) with all "
            f"{count_parameters(reference):,} parameters loaded under torchvision's names."
        )

    return run_check("check_densenet121", body)


@functools.lru_cache(maxsize=1)
def _reference() -> nn.Module:
    """The seeded reference, built once per process (it is only read, never trained)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return randomise(densenet121(), torch.Generator().manual_seed(3)).eval()


def _get_model(model_or_factory: Any) -> nn.Module:
    if isinstance(model_or_factory, nn.Module):
        return copy.deepcopy(model_or_factory)
    if not callable(model_or_factory):
        raise Failure(
            "Pass your model, or a function (or class) that builds it with no arguments; got "
            f"{type(model_or_factory).__name__}.",
            Mistake.WRONG_ARGUMENT,
        )
    return build_module(model_or_factory, (), "DenseNet-121")


def _check_block_lengths(state: dict[str, Tensor]) -> None:
    """A block with the wrong number of layers, named before the generic key check."""
    for b, want in enumerate(_LAYERS, 1):
        prefix = rf"features\.denseblock{b}\.denselayer(\d+)\."
        have = {int(m[1]) for key in state if (m := re.match(prefix, key))}
        if have and len(have) != want:
            raise Failure(
                f"Your denseblock{b} has {len(have)} dense layers; DenseNet-121 has "
                f"(6, 12, 24, 16) layers in its four blocks, so denseblock{b} needs {want}.",
                Mistake.WRONG_NUM_LAYERS,
            )


#: What a wrong parameter shape means, first match wins.
SHAPE_RULES: tuple[ShapeRule, ...] = (
    ShapeRule(
        lambda key, got, want: (
            ".transition" in key and key.endswith("conv.weight") and got[0] != want[0]
        ),
        "A transition compresses m channels to floor(0.5*m): {want[1]} -> {want[0]}.",
    ),
    ShapeRule(
        lambda key, got, want: ".denselayer" in key,
        "Inside DenseNet-121's dense layers the growth rate is k = 32 and the "
        "bottleneck has 4k = 128 maps; layer l of a block sees k0 + 32(l - 1) channels.",
    ),
    ShapeRule(
        lambda key, got, want: key.startswith("features.conv0"),
        "The stem is a 7x7 convolution, stride 2, padding 3, from 3 to 64 channels.",
    ),
    ShapeRule(
        lambda key, got, want: key.startswith("classifier"),
        "The classifier maps the 1024 final features to 1000 classes.",
    ),
)


def _compare(model: nn.Module, reference: nn.Module, generator: torch.Generator) -> None:
    parts = dict(model.named_modules())
    watched = {name: parts[f"features.{name}"] for name in FEATURE_STAGES}
    watched["classifier"] = parts["classifier"]
    x = torch.randn(1, 3, 64, 64, generator=generator)
    with torch.no_grad():
        out, error, seen = record(lambda: model(x.clone()), watched)
        trace = _trace(reference, x)
    if error is None and not close(as_tensor(out), trace.logits):
        check_deterministic(lambda: model(x.clone()), out, "model")
    trace.inputs, trace.outputs, trace.result = seen.inputs, seen.outputs, as_tensor(out)
    with torch.no_grad():
        compare_stages(STAGES, trace, error, "running your DenseNet-121 on a 1x3x64x64 image")


def _trace(reference: nn.Module, x: Tensor) -> Trace:
    """The reference's stem, the input and output of every stage, pooled features, logits."""
    f = reference.features
    conv = f.norm0(f.conv0(x))
    h = f.pool0(F.relu(conv))
    stem, stage_in, stage_out = h, {}, {}
    for name in FEATURE_STAGES:
        stage_in[name] = h
        h = stage_out[name] = getattr(f, name)(h)
    pooled = reference.forward_head(h, pre_logits=True)
    return Trace(
        features=f,
        conv=conv,
        stem=stem,
        stage_in=stage_in,
        stage_out=stage_out,
        norm5=h,
        pooled=pooled,
        logits=reference.classifier(pooled),
    )


def _stem_pool_padding(t: Trace) -> str:
    side, unpadded, want = t.conv.shape[-1], (t.conv.shape[-1] - 3) // 2 + 1, t.stem.shape[-1]
    return (
        "Your stem's max pool has no padding: a 3x3 pool with stride 2 turns the "
        f"{side}x{side} map into {unpadded}x{unpadded} instead of {want}x{want}. Use "
        "nn.MaxPool2d(3, stride=2, padding=1), as torchvision does (Table 1: "
        "112x112 -> 56x56)."
    )


_STEM = Stage(
    "The stem's output (the input of denseblock1)",
    expected=lambda t: t.stem,
    actual=input_of("denseblock1"),
    slips=(
        Slip(
            Mistake.STEM_MISSING_POOL,
            lambda t: F.relu(t.conv),
            "Your stem has no max pool: DenseNet-121's stem is a 7x7 conv with "
            "stride 2, BN, ReLU, then a 3x3 max pool with stride 2 (Table 1), so a "
            "64x64 image becomes 16x16 before the first block.",
        ),
        Slip(
            Mistake.STEM_POOL_PADDING,
            lambda t: F.max_pool2d(F.relu(t.conv), 3, 2),
            _stem_pool_padding,
        ),
        Slip(
            Mistake.STEM_AVG_POOL,
            lambda t: F.avg_pool2d(F.relu(t.conv), 3, 2, 1),
            "Your stem uses average pooling; Table 1's stem uses a 3x3 *max* pool "
            "with stride 2 (padding 1).",
        ),
        Slip(
            Mistake.MISSING_RELU,
            lambda t: t.features.pool0(t.conv),
            "Your stem has no ReLU between norm0 and the pool: conv0 -> norm0 -> ReLU -> max pool.",
        ),
    ),
    not_reached="features.denseblock1 is never called in your forward pass.",
)


def _transition_slips(name: str) -> tuple[Slip, ...]:
    """A transition's pooling and ReLU mistakes, computed from the stage's own input."""

    def without_pool(t: Trace, relu: bool) -> Tensor:
        block, h = getattr(t.features, name), t.stage_in[name]
        return block.conv(F.relu(block.norm(h)) if relu else block.norm(h))

    return (
        Slip(
            Mistake.MAX_POOL,
            lambda t: F.max_pool2d(without_pool(t, relu=True), 2, 2),
            f"{name} uses max pooling; transitions use a 2x2 average pool, stride 2.",
        ),
        Slip(
            Mistake.MISSING_RELU,
            lambda t: F.avg_pool2d(without_pool(t, relu=False), 2, 2),
            f"{name} has no ReLU between its norm and conv.",
        ),
    )


def _feature_stage(name: str) -> Stage:
    return Stage(
        f"The output of features.{name}",
        expected=lambda t: t.stage_out[name],
        actual=output_of(name),
        slips=_transition_slips(name) if name.startswith("transition") else (),
        not_reached=f"features.{name} is never called in your forward pass.",
        value_hint=f"Its input matched, so features.{name} itself differs "
        "(or your forward pass skips or reorders something before it).",
    )


_HEAD = (
    Stage(
        "The input of the classifier (pooled features)",
        expected=lambda t: t.pooled,
        actual=input_of("classifier"),
        slips=(
            Slip(
                Mistake.MISSING_FINAL_RELU,
                lambda t: F.adaptive_avg_pool2d(t.norm5, 1).flatten(1),
                "There is no ReLU between norm5 and the global pooling: torchvision's "
                "forward is relu(features(x)) -> adaptive_avg_pool2d -> flatten -> "
                "classifier.",
            ),
            Slip(
                Mistake.GLOBAL_MAX_POOL,
                lambda t: F.adaptive_max_pool2d(F.relu(t.norm5), 1).flatten(1),
                "You pooled globally with max; DenseNet uses global *average* pooling "
                "(F.adaptive_avg_pool2d(x, 1)).",
            ),
        ),
        not_reached="classifier is never called in your forward pass.",
    ),
    Stage(
        "The output of your model",
        expected=lambda t: t.logits,
        actual=result,
        slips=(
            Slip(
                Mistake.SOFTMAX,
                lambda t: t.logits.softmax(1),
                "Your model returns probabilities (softmax). Return the raw logits, as "
                "torchvision does; nn.CrossEntropyLoss applies log-softmax itself.",
            ),
        ),
    ),
)

#: DenseNet-121's data flow: stem, the stages of ``features``, pooling, classifier.
STAGES: tuple[Stage, ...] = (_STEM, *map(_feature_stage, FEATURE_STAGES), *_HEAD)
