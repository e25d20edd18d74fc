"""Exercises that check themselves: compare a learner's DenseNet pieces with the reference.

Every checker takes the learner's function, class or model, runs it next to the reference in
``densenet_edu`` (same weights, same random inputs) and returns a :class:`CheckResult`:

>>> from densenet_edu.exercises import check_dense_layer
>>> from densenet_edu import DenseLayer
>>> result = check_dense_layer(DenseLayer)
>>> bool(result)
True

A result is truthy on a pass and falsy on a failure. In a notebook it shows itself as a green
or red box; ``print(result)`` gives the same text; ``result.raise_if_failed()`` raises an
``AssertionError`` carrying the message (for scripts and the book build) and otherwise
returns the result. A failure names the *first* thing that is wrong, in the order the data
flows, and says what was expected and what the learner's code produced. ``result.mistake``
is a short code for the diagnosis (``"added_instead_of_concat"``, ``"max_pool"``, ...).

What each checker expects from the learner (the practice notebooks use these signatures):

* :func:`check_channel_count` ``(layer_in_channels, block_out_channels=None)``:
  ``layer_in_channels(k0, k, l) -> int`` and ``block_out_channels(k0, k, num_layers) -> int``.
* :func:`check_dense_layer` ``(cls)``: built as ``cls(in_channels, growth_rate, bn_size)``
  (positional); ``forward`` receives a *list* of feature maps ``[x_0, ..., x_{l-1}]`` and
  returns the ``growth_rate`` new maps. Submodules ``norm1, conv1, norm2, conv2`` as in
  torchvision (ReLUs may be modules or functions), convolutions without bias.
* :func:`check_dense_block` ``(cls)``: built as ``cls(num_layers, in_channels, growth_rate,
  bn_size)``; layers named ``denselayer1``, ``denselayer2``, ...; ``forward`` takes a tensor.
* :func:`check_transition` ``(cls)``: built as ``cls(in_channels, compression)``; submodules
  ``norm`` and ``conv``.
* :func:`check_densenet121` ``(model_or_factory)``: a model, or a callable with no arguments
  that returns one, laid out like torchvision's ``densenet121`` (``features.conv0`` ...
  ``features.norm5``, ``classifier``).

A learner's code that raises is reported with its own exception and the line of the
learner's code it came from, never with the checker's internals.
"""

from __future__ import annotations

import copy
import functools
import html
import math
import os
import re
import sysconfig
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densenet_edu.analysis import count_parameters
from densenet_edu.layers import DenseBlock, DenseLayer, Transition, compressed_channels
from densenet_edu.model import densenet121

__all__ = [
    "CheckResult",
    "check_channel_count",
    "check_dense_block",
    "check_dense_layer",
    "check_densenet121",
    "check_transition",
]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CheckResult:
    """The verdict of a checker: truthy on a pass, falsy on a failure.

    Attributes:
        check: the checker's name, e.g. ``"check_dense_layer"``.
        passed: whether the learner's code matches the reference.
        message: a short pass note, or the diagnosis of the first thing that is wrong.
        mistake: a short code naming the diagnosis (``None`` on a pass).
        details: extra context, e.g. the learner's line that raised.
    """

    check: str
    passed: bool
    message: str
    mistake: str | None = None
    details: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "not yet right"
        text = f"{self.check}: {verdict}\n{self.message}"
        return f"{text}\n\n{self.details}" if self.details else text

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        if self.passed:
            colour, background, icon, verdict = "#1a7f37", "#eaf6ec", "&#10004;", "passed"
        else:
            colour, background, icon, verdict = "#b3261e", "#fdeceb", "&#10008;", "not yet right"
        body = html.escape(self.message).replace("\n", "<br>")
        details = (
            f'<pre style="margin:0.5em 0 0;padding:0.4em;background:#ffffff;color:#1f2328;'
            f'white-space:pre-wrap;font-size:0.9em">{html.escape(self.details)}</pre>'
            if self.details
            else ""
        )
        state = "pass" if self.passed else "fail"
        return (
            f'<div class="densenet-edu-check densenet-edu-check-{state}" '
            f'style="border-left:5px solid {colour};background:{background};color:#1f2328;'
            f'padding:0.6em 0.9em;margin:0.4em 0;border-radius:4px">'
            f'<strong style="color:{colour}">{icon} {html.escape(self.check)}: {verdict}</strong>'
            f'<div style="margin-top:0.3em">{body}</div>{details}</div>'
        )

    def raise_if_failed(self) -> CheckResult:
        """Raise ``AssertionError`` with the message on a failure; return ``self`` on a pass."""
        if not self.passed:
            raise AssertionError(str(self))
        return self


class _Failure(Exception):
    """Raised inside a checker to stop at the first thing that is wrong."""

    def __init__(self, message: str, mistake: str, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.mistake = mistake
        self.details = details


def _run(check: str, body: Callable[[], str]) -> CheckResult:
    # The checker must not disturb the learner's random state, and must see the same
    # inputs on every run.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            message = body()
        except _Failure as failure:
            return CheckResult(check, False, failure.message, failure.mistake, failure.details)
    return CheckResult(check, True, message)


# --------------------------------------------------------------------------- learner errors

_INTERNAL_DIRS = tuple(
    os.path.realpath(path) + os.sep
    for path in (
        os.path.dirname(torch.__file__),
        os.path.dirname(__file__),
        sysconfig.get_paths()["stdlib"],
    )
)

_CHANNEL_AXIS_HINT = (
    "Feature maps are stacked side by side along the channel axis, dim=1 of "
    "(batch, channels, height, width): torch.cat(features, dim=1)."
)

# (pattern of the error text, hint, mistake code): a code other than "raised" names the
# mistake outright, so the checkers report it instead of trying further configurations.
_ERROR_HINTS: list[tuple[str, Callable[[re.Match[str]], str], str]] = [
    (
        r"Sizes of tensors must match except in dimension ([023])\b",
        lambda m: (
            f"You concatenated along dimension {m[1]}"
            + (", the batch axis" if m[1] == "0" else ", a spatial axis")
            + ", so torch.cat found maps of different widths there. "
            + _CHANNEL_AXIS_HINT
        ),
        "concat_wrong_dim",
    ),
    (
        r"'(list|tuple)' object has no attribute|must be Tensor, not (list|tuple)"
        r"|got \((list|tuple),",
        lambda m: (
            "Your forward treats its argument as one tensor, but a dense layer receives a "
            "*list* of feature maps [x_0, ..., x_{l-1}]. Concatenate the list first, "
            "x = torch.cat(features, dim=1), and run norm1 on x."
        ),
        "list_not_concatenated",
    ),
    (
        r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) "
        r"at non-singleton dimension 1",
        lambda m: (
            f"You added feature maps with {m[1]} and {m[2]} channels. DenseNet does not "
            "add feature maps, it concatenates them along the channel axis: "
            "torch.cat(features, dim=1)."
        ),
        "raised",
    ),
    (
        r"running_mean should contain (\d+) elements not (\d+)",
        lambda m: (
            f"A BatchNorm built for {m[2]} channels received a tensor with {m[1]} "
            "channels. Check which tensor you normalise: norm1 normalises the concatenation of "
            "all the input feature maps."
        ),
        "raised",
    ),
    (
        r"expected input\[[^\]]*\] to have (\d+) channels, but got (\d+) channels",
        lambda m: (
            f"A convolution built for {m[1]} input channels received {m[2]}. "
            "Follow the channel count through your forward pass."
        ),
        "raised",
    ),
    (
        r"a leaf Variable that requires grad is being used in an in-place operation",
        lambda m: (
            "Your code changed an input tensor in place (an in-place ReLU on the input?). "
            "Earlier feature maps are shared by every later layer and must not be modified."
        ),
        "raised",
    ),
]


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


def _learner_error(exc: BaseException, doing: str) -> _Failure:
    name = type(exc).__name__
    if isinstance(exc, NotImplementedError):
        message = (
            f"Your code raised NotImplementedError while {doing}: a TODO is still open. "
            "Replace `raise NotImplementedError` with your implementation."
        )
        return _Failure(message, "not_implemented", _learner_frame(exc))
    text = str(exc).strip() or "(no message)"
    message = f"Your code raised {name} while {doing}:\n{text}"
    mistake = "raised"
    for pattern, hint, code in _ERROR_HINTS:
        match = re.search(pattern, text)
        if match:
            message += f"\nHint: {hint(match)}"
            mistake = code
            break
    return _Failure(message, mistake, _learner_frame(exc))


def _call(doing: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # the learner's code may raise anything
        raise _learner_error(exc, doing) from None


def _build_module(cls: Any, args: tuple[Any, ...], what: str) -> nn.Module:
    call = f"{_name(cls)}({', '.join(map(repr, args))})"
    module = _call(f"building your {what} with {call}", cls, *args)
    if not isinstance(module, nn.Module):
        raise _Failure(
            f"{call} returned a {type(module).__name__}, not a torch.nn.Module. "
            f"Make your {what} a subclass of nn.Module (and call super().__init__()).",
            "not_a_module",
        )
    return module


def _expect_class(cls: Any, what: str, example: str) -> None:
    if isinstance(cls, nn.Module):
        raise _Failure(
            f"Pass the class itself, not an instance: {example}, not {example}(...). "
            f"The checker builds your {what} several times with different arguments.",
            "wrong_argument",
        )
    if not callable(cls):
        raise _Failure(
            f"Expected your {what} class, got {type(cls).__name__} {cls!r}.", "wrong_argument"
        )


def _name(obj: Any) -> str:
    return getattr(obj, "__name__", type(obj).__name__)


# --------------------------------------------------------------------------- tensors


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _close(actual: Any, expected: Tensor) -> bool:
    if not isinstance(actual, Tensor) or actual.shape != expected.shape:
        return False
    if actual.dtype != expected.dtype:
        actual = actual.to(expected.dtype)
    scale = expected.detach().abs().max().item() if expected.numel() else 0.0
    tol = 1e-5 + 1e-4 * scale
    return bool(torch.allclose(actual.detach(), expected.detach(), rtol=1e-4, atol=tol))


def _difference(actual: Tensor, expected: Tensor) -> str:
    diff = (actual.detach().float() - expected.detach().float()).abs()
    index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    return (
        f"the largest difference is {diff.max().item():.4g} at index {index} "
        f"(expected {expected[index].item():.4f}, got {actual[index].item():.4f})"
    )


def _as_tensor(value: Any) -> Tensor | None:
    """A tensor, or a list/tuple of maps concatenated on the channel axis, as a detached copy."""
    if isinstance(value, Tensor):
        return value.detach().clone()
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Tensor) for v in value):
        try:
            return torch.cat([v.detach() for v in value], dim=1)
        except RuntimeError:
            return None
    return None


class _Recorder:
    """Records the first input and output of named submodules of the learner's module."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.modules = modules
        self.inputs: dict[str, Tensor | None] = {}
        self.outputs: dict[str, Tensor | None] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> _Recorder:
        for name, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()

    def _pre(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if name not in self.inputs:
                self.inputs[name] = _as_tensor(args[0]) if args else None

        return hook

    def _post(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if name not in self.outputs:
                self.outputs[name] = _as_tensor(output)

        return hook


@dataclass
class _Stage:
    """One point of the data flow to compare, with the mistakes that explain a difference."""

    label: str
    expected: Tensor
    actual: Tensor | None
    variants: Sequence[tuple[Tensor | None, str, str]] = ()
    not_reached: str = ""
    shape_message: str = ""
    value_mistake: str = "wrong_values"
    value_hint: str = ""


def _walk(stages: Sequence[_Stage], error: Exception | None, doing: str) -> None:
    """Raise a diagnosis for the first stage that differs (or the learner's own error)."""
    for stage in stages:
        if _close(stage.actual, stage.expected):
            continue
        for variant, mistake, message in stage.variants:
            if variant is not None and _close(stage.actual, variant):
                details = _learner_error(error, doing).message if error is not None else ""
                raise _Failure(
                    message, mistake, f"(your code then failed: {details})" if details else ""
                )
        if stage.actual is None:
            if error is not None:
                raise _learner_error(error, doing)
            raise _Failure(stage.not_reached or f"{stage.label} was never computed.", "not_used")
        if stage.actual.shape != stage.expected.shape:
            message = stage.shape_message or (
                f"{stage.label} has shape {_shape(stage.actual)}, "
                f"expected {_shape(stage.expected)}."
            )
            raise _Failure(message, "wrong_shape")
        message = (
            f"{stage.label} has the right shape {_shape(stage.expected)} but different values: "
            f"{_difference(stage.actual, stage.expected)}."
        )
        raise _Failure(
            message + (f" {stage.value_hint}" if stage.value_hint else ""), stage.value_mistake
        )
    if error is not None:
        raise _learner_error(error, doing)


def _randomise(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every BatchNorm non-trivial affine parameters and running statistics.

    With the default (weight 1, bias 0, mean 0, var 1) a BatchNorm in eval mode is the
    identity, and a missing BatchNorm would go unnoticed.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.5)
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
            elif isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)
    return module


def _inputs(shapes: Sequence[tuple[int, ...]], generator: torch.Generator) -> list[Tensor]:
    return [torch.randn(shape, generator=generator) for shape in shapes]


def _leaves(tensors: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """Leaves that collect gradients, and non-leaf copies to feed in (so that an in-place
    change by the learner is detected by value instead of failing inside autograd)."""
    leaves = [t.clone().requires_grad_(True) for t in tensors]
    return leaves, [leaf * 1.0 for leaf in leaves]


# --------------------------------------------------------------------------- state dicts


def _compare_state_dicts(
    expected: dict[str, Tensor],
    actual: dict[str, Tensor],
    what: str,
    shape_hint: Callable[[str, tuple[int, ...], tuple[int, ...]], str | None] | None = None,
) -> None:
    missing = [k for k in expected if k not in actual]
    unexpected = [k for k in actual if k not in expected]
    biases = [
        k
        for k in unexpected
        if k.endswith(".bias")
        and expected.get(k[: -len("bias")] + "weight", torch.empty(0)).dim() == 4
    ]
    if biases:
        conv = biases[0][: -len(".bias")]
        raise _Failure(
            f"Your {conv} has a bias ({biases[0]!r}), but DenseNet's convolutions have none: "
            "every convolution is followed, sooner or later, by a BatchNorm that subtracts the "
            "mean and adds its own shift, so a bias would be wasted parameters. "
            f"Build it with nn.Conv2d(..., bias=False).",
            "bias_on_conv",
        )
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
        raise _Failure("\n".join(lines), "wrong_key_names")
    for key, tensor in expected.items():
        if actual[key].shape != tensor.shape:
            got, want = tuple(actual[key].shape), tuple(tensor.shape)
            hint = shape_hint(key, got, want) if shape_hint else None
            raise _Failure(
                f"{key} has shape {got}, expected {want}." + (f" {hint}" if hint else ""),
                "wrong_shape",
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


def _load(module: nn.Module, state: dict[str, Tensor]) -> None:
    _call("loading the reference weights into it", module.load_state_dict, state)


def _check_gradients(
    leaves: Sequence[Tensor],
    ref_leaves: Sequence[Tensor],
    learner: nn.Module,
    reference: nn.Module,
    input_names: Sequence[str],
) -> None:
    for name, leaf, ref_leaf in zip(input_names, leaves, ref_leaves, strict=True):
        if leaf.grad is None:
            raise _Failure(
                f"{name} receives no gradient from your code: something cut the autograd graph "
                "(.detach(), .data, torch.no_grad() or a NumPy round trip). Earlier layers "
                "learn through these gradients.",
                "no_gradient",
            )
        if not _close(leaf.grad, ref_leaf.grad):
            raise _Failure(
                f"The forward pass matches, but the gradient with respect to {name} differs: "
                f"{_difference(leaf.grad, ref_leaf.grad)}.",
                "wrong_gradient",
            )
    reference_params = dict(reference.named_parameters())
    for name, param in learner.named_parameters():
        ref_param = reference_params.get(name)
        if ref_param is None or ref_param.grad is None:
            continue
        if param.grad is None:
            raise _Failure(
                f"The parameter {name} receives no gradient: your forward pass does not use it "
                "in a differentiable way.",
                "no_gradient",
            )
        if not _close(param.grad, ref_param.grad):
            raise _Failure(
                f"The forward pass matches, but the gradient of {name} differs: "
                f"{_difference(param.grad, ref_param.grad)}.",
                "wrong_gradient",
            )


def _check_inputs_unchanged(
    inputs: Sequence[Tensor], originals: Sequence[Tensor], what: str
) -> None:
    for i, (now, before) in enumerate(zip(inputs, originals, strict=True)):
        if not torch.equal(now.detach(), before):
            raise _Failure(
                f"Your {what} changed its input x_{i} in place (an in-place ReLU or += on an "
                "input?). In a dense block every later layer reads the same earlier feature "
                "maps, so they must stay unchanged; make the first operation out of place.",
                "modified_input",
            )


def _check_deterministic(run: Callable[[], Any], first: Any, what: str) -> None:
    """In eval mode the same input must give the same output; dropout left on breaks that."""
    first_tensor = _as_tensor(first)
    if first_tensor is None:
        return
    try:
        with torch.no_grad():
            again = _as_tensor(run())
    except Exception:  # the learner's code may raise anything; the caller reports it
        return
    if again is None or again.shape != first_tensor.shape or torch.equal(again, first_tensor):
        return
    raise _Failure(
        f"Your {what} gives different outputs for the same input in eval mode: something "
        "random is still switched on, most likely dropout. After .eval() dropout must be off: "
        "use an nn.Dropout module (eval() switches it off) or "
        "F.dropout(x, p, training=self.training); F.dropout's training argument defaults "
        "to True.",
        "dropout_in_eval",
    )


def _first_named(configs: Sequence[Callable[[], None]]) -> None:
    """Run configurations in order. When one fails only because the learner's code raised,
    try the remaining ones for a failure that names the mistake, else report the first."""
    first: _Failure | None = None
    for run in configs:
        try:
            run()
        except _Failure as failure:
            if failure.mistake not in ("raised", "not_implemented"):
                raise
            first = first or failure
            if failure.mistake == "not_implemented":
                break
    if first is not None:
        raise first


# --------------------------------------------------------------------------- channel count

_LAYER_CASES = [(64, 32, 1), (64, 32, 2), (64, 32, 3)] + [
    (k0, k, n) for k0 in (64, 16, 24, 3) for k in (32, 12, 4, 48) for n in (1, 2, 5, 6, 12, 24)
]

_LAYER_MISTAKES: list[tuple[Callable[[int, int, int], int], str, str]] = [
    (
        lambda k0, k, n: k0 + k * n,
        "off_by_one",
        "You also counted layer l's own k output maps (k0 + k*l). Layer l sees the block "
        "input and the outputs of the l - 1 layers *before* it: k0 + k*(l - 1).",
    ),
    (
        lambda k0, k, n: k0 + k * (n - 2),
        "off_by_one",
        "You counted one earlier layer too few (k0 + k*(l - 2)): layer l sees the outputs of "
        "all l - 1 layers before it, k0 + k*(l - 1).",
    ),
    (
        lambda k0, k, n: k * (n - 1),
        "missing_k0",
        "You left out the block's input: every layer also sees the k0 maps the block started "
        "with, so it is k0 + k*(l - 1).",
    ),
    (
        lambda k0, k, n: k * n,
        "missing_k0",
        "You computed k*l: that leaves out the block's k0 input maps and counts layer l's own "
        "output. Layer l sees k0 + k*(l - 1).",
    ),
]

_BLOCK_MISTAKES: list[tuple[Callable[[int, int, int], int], str, str]] = [
    (
        lambda k0, k, n: k0 + k * (n - 1),
        "missing_last_layer",
        "That is the input width of the *last* layer, k0 + k*(L - 1). The block's output also "
        "contains the last layer's own k maps: k0 + k*L.",
    ),
    (
        lambda k0, k, n: k0 + k * (n + 1),
        "off_by_one",
        "You counted one layer too many: L layers add k maps each, k0 + k*L.",
    ),
    (
        lambda k0, k, n: k * n,
        "missing_block_input",
        "You left out the block's input x_0: a dense block returns the concatenation of its "
        "input and all L new outputs, k0 + k*L.",
    ),
    (
        lambda k0, k, n: k,
        "only_last_layer",
        "That is only the last layer's output. A dense block returns every feature map it holds "
        "(input and all L layers' outputs): k0 + k*L.",
    ),
]


def check_channel_count(
    layer_in_channels: Callable[[int, int, int], int],
    block_out_channels: Callable[[int, int, int], int] | None = None,
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
            _LAYER_MISTAKES,
            "layer {n} of a block with k0={k0} and k={k} sees {k0} + {k}*({n} - 1) = {want} "
            "channels",
        )
        checked = "layer_in_channels"
        if block_out_channels is not None:
            _check_formula(
                block_out_channels,
                "block_out_channels",
                lambda k0, k, n: k0 + k * n,
                _BLOCK_MISTAKES,
                "a block with k0={k0}, k={k} and {n} layers returns {k0} + {n}*{k} = {want} "
                "channels",
            )
            checked += " and block_out_channels"
        verb = "agree" if block_out_channels is not None else "agrees"
        return (
            f"{checked} {verb} with the paper on {len(_LAYER_CASES)} combinations of "
            "(k0, k, l): layer l sees k0 + k(l - 1) channels"
            + (", a block of L layers returns k0 + kL." if block_out_channels else ".")
        )

    return _run("check_channel_count", body)


def _check_formula(
    fn: Callable[[int, int, int], int],
    name: str,
    correct: Callable[[int, int, int], int],
    mistakes: Sequence[tuple[Callable[[int, int, int], int], str, str]],
    sentence: str,
) -> None:
    if not callable(fn):
        raise _Failure(f"{name} should be a function, got {type(fn).__name__}.", "wrong_argument")
    answers: dict[tuple[int, int, int], Any] = {}
    for case in _LAYER_CASES:
        k0, k, n = case
        value = _call(f"computing {name}({k0}, {k}, {n})", fn, k0, k, n)
        if isinstance(value, bool) or not isinstance(value, int):
            is_whole_float = isinstance(value, float) and value.is_integer()
            hint = " Use integer arithmetic (// rather than /)." if is_whole_float else ""
            raise _Failure(
                f"{name}({k0}, {k}, {n}) returned {value!r} ({type(value).__name__}); "
                f"a number of channels is an int.{hint}",
                "wrong_type",
            )
        answers[case] = value
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
    for formula, mistake, explanation in mistakes:
        if all(answers[case] == formula(*case) for case in _LAYER_CASES):
            raise _Failure(f"{first}\n{explanation}", mistake)
    raise _Failure(f"{first}\n{len(wrong)} of {len(_LAYER_CASES)} cases differ.", "wrong_value")


# --------------------------------------------------------------------------- dense layer


def check_dense_layer(cls: type[nn.Module]) -> CheckResult:
    """Check a bottleneck dense layer (DenseNet-B, Section 3) against :class:`DenseLayer`.

    The class is built as ``cls(in_channels, growth_rate, bn_size)``; its ``forward``
    receives a list of feature maps ``[x_0, ..., x_{l-1}]`` and must return the
    ``growth_rate`` new maps: concat -> norm1 -> ReLU -> conv1 (1x1, bn_size*k maps) ->
    norm2 -> ReLU -> conv2 (3x3, k maps). The reference weights are copied in, and outputs,
    BatchNorm statistics and gradients are compared in train and eval mode.
    """

    def body() -> str:
        _expect_class(cls, "dense layer", _name(cls))
        generator = torch.Generator().manual_seed(0)
        _first_named(
            [
                lambda: _dense_layer_config(cls, [6, 3, 3, 3], 3, 2, generator),
                lambda: _dense_layer_config(cls, [4, 4, 4], 4, 4, generator),
            ]
        )
        return (
            "Your dense layer matches densenet_edu.DenseLayer: same parameter names and shapes, "
            "same outputs, BatchNorm statistics and gradients in train and eval mode, "
            "on inputs of 3 and 4 feature maps."
        )

    return _run("check_dense_layer", body)


def _layer_shape_hint(in_channels: int, k: int, bn_size: int) -> Callable[..., str | None]:
    width = bn_size * k

    def hint(key: str, got: tuple[int, ...], want: tuple[int, ...]) -> str | None:
        if key.startswith("norm1"):
            return (
                f"norm1 normalises the layer's input, the concatenation of all earlier maps "
                f"({in_channels} channels): BN comes *before* the convolution (BN-ReLU-conv)."
            )
        if key == "conv1.weight":
            if got[2:] != want[2:]:
                return "conv1 is the 1x1 bottleneck convolution: kernel_size=1."
            if got[0] != want[0]:
                return (
                    f"conv1 produces bn_size * growth_rate = {bn_size}*{k} = {width} maps "
                    "(the bottleneck width)."
                )
            return f"conv1 reads all {in_channels} input channels."
        if key.startswith("norm2"):
            return f"norm2 normalises conv1's output, {width} channels."
        if key == "conv2.weight":
            if got[2:] != want[2:]:
                return "conv2 is the 3x3 convolution (kernel_size=3, padding=1)."
            return f"conv2 turns the {width} bottleneck maps into growth_rate = {k} new maps."
        return None

    return hint


def _dense_layer_config(
    cls: type[nn.Module], widths: list[int], k: int, bn_size: int, generator: torch.Generator
) -> None:
    in_channels = sum(widths)
    reference = _randomise(DenseLayer(in_channels, k, bn_size), generator)
    learner = _build_module(cls, (in_channels, k, bn_size), "dense layer")
    _compare_state_dicts(
        reference.state_dict(),
        learner.state_dict(),
        "dense layer",
        _layer_shape_hint(in_channels, k, bn_size),
    )
    _load(learner, reference.state_dict())
    parts = dict(learner.named_modules())
    size = 8
    for training in (True, False):
        reference.train(training)
        learner.train(training)
        features = _inputs([(2, w, size, size) for w in widths], generator)
        mode = "train" if training else "eval"
        doing = f"running your layer in {mode} mode on a list of {len(widths)} feature maps"

        leaves, inputs = _leaves(features)
        with _Recorder({n: parts[n] for n in ("norm1", "conv1", "norm2", "conv2")}) as rec:
            try:
                out, error = learner(list(inputs)), None
            except Exception as exc:
                out, error = None, exc
        if error is None:
            _check_inputs_unchanged(inputs, features, "layer")

        ref_leaves, ref_inputs = _leaves(features)
        x = torch.cat(ref_inputs, dim=1)
        n1 = reference.norm1(x)
        r1 = F.relu(n1)
        c1 = reference.conv1(r1)
        n2 = reference.norm2(c1)
        r2 = F.relu(n2)
        expected = reference.conv2(r2)

        if error is not None or not _close(out, expected):
            if not training and error is None:
                _check_deterministic(lambda inputs=inputs: learner(list(inputs)), out, "layer")
            out_tensor = _as_tensor(out)
            same_shapes = len({f.shape for f in features}) == 1
            batch_concat = torch.cat(features, dim=0) if same_shapes else None
            last = widths[-1]
            stages = [
                _Stage(
                    "The input of norm1",
                    x,
                    rec.inputs.get("norm1"),
                    [
                        (
                            batch_concat,
                            "concat_wrong_dim",
                            "You concatenated the feature maps along dimension 0, the batch "
                            f"axis: norm1 received "
                            f"{_shape(batch_concat) if batch_concat is not None else '?'} "
                            f"instead of {_shape(x)}. " + _CHANNEL_AXIS_HINT,
                        ),
                        (
                            F.relu(x),
                            "relu_before_bn",
                            "You applied the ReLU before norm1 (ReLU -> BN -> conv). DenseNet's "
                            "composite function is BN -> ReLU -> conv: normalise the "
                            "concatenated input with norm1, then apply the ReLU, then conv1.",
                        ),
                        (
                            torch.stack(features).sum(0) if same_shapes else None,
                            "added_instead_of_concat",
                            "You added the feature maps instead of concatenating them. "
                            f"norm1 received {_shape(features[0])}, but the layer's input is "
                            f"the concatenation torch.cat(features, dim=1) of shape {_shape(x)}: "
                            "DenseNet keeps every earlier map as separate channels.",
                        ),
                        (
                            torch.cat(features[::-1], dim=1),
                            "wrong_concat_order",
                            "You concatenated the feature maps in reverse order. Keep the order "
                            "in which they were made, [x_0, x_1, ..., x_{l-1}]: each channel of "
                            "norm1 and conv1 belongs to one input map, so trained weights only "
                            "fit that order.",
                        ),
                        (
                            features[-1],
                            "bn_on_last_feature",
                            f"norm1 should normalise the concatenated input ({in_channels} "
                            f"channels), you normalised only the last feature map ({last} "
                            "channels). Concatenate first: torch.cat(features, dim=1).",
                        ),
                        (
                            features[0],
                            "bn_on_first_feature",
                            f"norm1 should normalise the concatenated input ({in_channels} "
                            f"channels), you normalised only the first feature map "
                            f"({widths[0]} channels).",
                        ),
                    ],
                    not_reached="norm1 is never used in your forward pass: the layer starts "
                    "with BN -> ReLU on the concatenated input.",
                ),
                _Stage(
                    "The input of conv1",
                    r1,
                    rec.inputs.get("conv1"),
                    [
                        (
                            n1,
                            "missing_relu",
                            "There is no ReLU between norm1 and conv1: the composite function "
                            "is BN -> ReLU -> conv. conv1 received negative values.",
                        ),
                        (
                            x,
                            "bn_output_unused",
                            "conv1 reads the raw concatenated input: the output of norm1 is "
                            "never used. Feed norm1's output (after the ReLU) to conv1.",
                        ),
                        (
                            F.relu(x),
                            "bn_output_unused",
                            "conv1 reads ReLU(input) without the BatchNorm: norm1's output "
                            "is never used. The order is norm1 -> ReLU -> conv1.",
                        ),
                    ],
                    not_reached="conv1 is never used in your forward pass.",
                ),
                _Stage(
                    "The input of norm2",
                    c1,
                    rec.inputs.get("norm2"),
                    [
                        (
                            F.relu(c1),
                            "relu_before_bn",
                            "You applied the ReLU before norm2 (ReLU -> BN -> conv). After the "
                            "1x1 bottleneck the order is again BN -> ReLU -> conv: norm2 "
                            "normalises conv1's output, then the ReLU, then conv2.",
                        )
                    ],
                    not_reached="norm2 is never used: the bottleneck is "
                    "BN-ReLU-1x1 conv, then BN-ReLU-3x3 conv.",
                    value_hint="norm2 should normalise conv1's output.",
                ),
                _Stage(
                    "The input of conv2",
                    r2,
                    rec.inputs.get("conv2"),
                    [
                        (
                            n2,
                            "missing_relu",
                            "There is no ReLU between norm2 and conv2: after the 1x1 "
                            "bottleneck comes BN -> ReLU -> 3x3 conv.",
                        ),
                        (
                            c1,
                            "bn_output_unused",
                            "conv2 reads conv1's output directly: norm2's output is never used.",
                        ),
                        (
                            F.relu(c1),
                            "bn_output_unused",
                            "conv2 reads ReLU(conv1's output) without norm2: norm2's output is "
                            "never used.",
                        ),
                    ],
                    not_reached="conv2 is never used in your forward pass.",
                ),
                _Stage(
                    "Your layer's output",
                    expected,
                    out_tensor,
                    [
                        (
                            torch.cat([x, expected], dim=1),
                            "returned_concat",
                            f"Your layer returned {in_channels + k} channels: its input "
                            f"concatenated with the {k} new maps. A dense layer returns only its "
                            f"growth_rate = {k} new feature maps; the dense block does the "
                            "concatenating.",
                        ),
                        (
                            F.relu(expected),
                            "extra_relu",
                            "Your layer applies a ReLU after conv2. A dense layer ends with the "
                            "3x3 convolution; the next layer starts with its own BN -> ReLU.",
                        ),
                    ],
                    shape_message=f"Your layer returns shape "
                    f"{_shape(out_tensor) if out_tensor is not None else '?'}, expected "
                    f"{_shape(expected)}: growth_rate = {k} new maps of the input's "
                    f"{size}x{size} size (conv2 needs padding=1).",
                ),
            ]
            _walk(stages, error, doing)
            raise _Failure(
                f"Your layer's output differs: {_difference(out_tensor, expected)}.",
                "wrong_values",
            )

        if training:
            for name in ("norm1", "norm2"):
                mine, ref = parts[name].running_mean, getattr(reference, name).running_mean
                if not _close(mine, ref):
                    raise _Failure(
                        f"After one training step, {name}.running_mean differs from the "
                        "reference: call each BatchNorm exactly once per forward pass, in "
                        "train mode.",
                        "wrong_running_stats",
                    )
            grad = torch.randn(expected.shape, generator=generator)
            _call("back-propagating through your layer", out.backward, grad)
            expected.backward(grad)
            names = [f"the input feature map x_{i}" for i in range(len(widths))]
            _check_gradients(leaves, ref_leaves, learner, reference, names)


# --------------------------------------------------------------------------- dense block


def check_dense_block(cls: type[nn.Module]) -> CheckResult:
    """Check a dense block (Section 3, Eq. 2) against :class:`DenseBlock`.

    The class is built as ``cls(num_layers, in_channels, growth_rate, bn_size)`` and must
    hold its layers as ``denselayer1``, ``denselayer2``, ... (use ``densenet_edu.DenseLayer``
    or your own). Layer l must receive the concatenation [x_0, ..., x_{l-1}] (as a list or
    one tensor), and the block must return [x_0, x_1, ..., x_L] concatenated, in that order.
    Forward and backward are compared in train and eval mode.
    """

    def body() -> str:
        _expect_class(cls, "dense block", _name(cls))
        generator = torch.Generator().manual_seed(1)
        _first_named(
            [
                lambda: _dense_block_config(cls, 3, 64, 4, 4, generator),
                lambda: _dense_block_config(cls, 3, 4, 4, 2, generator),
            ]
        )
        return (
            "Your dense block matches densenet_edu.DenseBlock: every layer sees all earlier "
            "feature maps in order, the block returns k0 + L*k channels (64 + 3*4 = 76 in the "
            "test), and outputs and gradients agree in train and eval mode."
        )

    return _run("check_dense_block", body)


def _block_structure(sd: dict[str, Tensor], num_layers: int, k0: int, k: int) -> None:
    """Name a wrong number of layers or wrong layer widths before the generic key check."""
    layers = sorted({int(m[1]) for key in sd if (m := re.match(r"denselayer(\d+)\.", key))})
    if not layers:
        return
    if len(layers) != num_layers:
        raise _Failure(
            f"Your block has {len(layers)} dense layers; built with num_layers={num_layers} it "
            f"must have {num_layers} (denselayer1 ... denselayer{num_layers}).",
            "wrong_num_layers",
        )
    widths = [
        sd[f"denselayer{n}.norm1.weight"].shape[0]
        for n in layers
        if f"denselayer{n}.norm1.weight" in sd
    ]
    want = [k0 + k * (n - 1) for n in range(1, num_layers + 1)]
    if len(widths) != num_layers or widths == want:
        return
    bad = next(n for n, (w, e) in enumerate(zip(widths, want, strict=True), 1) if w != e)
    first = (
        f"denselayer{bad} is built for {widths[bad - 1]} input channels; in a block with "
        f"k0={k0} and k={k} it receives k0 + k*({bad} - 1) = {want[bad - 1]}."
    )
    if widths == [k0 + k * n for n in range(1, num_layers + 1)]:
        raise _Failure(
            f"{first}\nYou built layer l for k0 + k*l channels (off by one): the first layer "
            "sees only the block's input, k0 channels.",
            "off_by_one",
        )
    if all(w == k0 for w in widths):
        raise _Failure(
            f"{first}\nEvery layer is built for k0 channels, but the input grows by k channels "
            "per layer because each layer also sees all earlier outputs.",
            "wrong_layer_width",
        )
    raise _Failure(first, "wrong_layer_width")


def _dense_block_config(
    cls: type[nn.Module],
    num_layers: int,
    k0: int,
    k: int,
    bn_size: int,
    generator: torch.Generator,
) -> None:
    reference = _randomise(DenseBlock(num_layers, k0, k, bn_size), generator)
    learner = _build_module(cls, (num_layers, k0, k, bn_size), "dense block")
    learner_sd = learner.state_dict()
    _block_structure(learner_sd, num_layers, k0, k)
    _compare_state_dicts(reference.state_dict(), learner_sd, "dense block")
    _load(learner, reference.state_dict())
    parts = dict(learner.named_modules())
    names = [f"denselayer{n}" for n in range(1, num_layers + 1)]
    out_channels = k0 + num_layers * k
    for training in (True, False):
        reference.train(training)
        learner.train(training)
        (x0,) = _inputs([(2, k0, 8, 8)], generator)
        mode = "train" if training else "eval"
        doing = f"running your block in {mode} mode"

        leaves, inputs = _leaves([x0])
        with _Recorder({n: parts[n] for n in names}) as rec:
            try:
                out, error = learner(inputs[0]), None
            except Exception as exc:
                out, error = None, exc
        if error is None:
            _check_inputs_unchanged(inputs, [x0], "block")

        ref_leaves, ref_inputs = _leaves([x0])
        features = [ref_inputs[0]]
        for layer in reference.values():
            features.append(layer(features))
        expected = torch.cat(features, dim=1)

        if error is not None or not _close(out, expected):
            if not training and error is None:
                _check_deterministic(lambda inputs=inputs: learner(inputs[0]), out, "block")
            out_tensor = _as_tensor(out)
            x_0 = features[0]
            # x_0 added to the new maps, like a ResNet shortcut (possible only when k0 == k).
            shortcut = k0 == k
            shortcut_message = (
                "You added the block's input x_0 to the new feature maps, like a ResNet "
                "shortcut. A dense block adds nothing: x_0 already reaches every layer and the "
                "block's output through the concatenation. Keep each layer's k new maps as they "
                "are and concatenate: [x_0, x_1, ..., x_L]."
            )
            stages: list[_Stage] = []
            for n, name in enumerate(names, 1):
                before = features[:n]
                same = len({f.shape for f in before}) == 1
                variants = []
                if n >= 2:
                    variants = [
                        (
                            torch.cat([x_0] + [f + x_0 for f in before[1:]], dim=1)
                            if shortcut
                            else None,
                            "adds_block_input",
                            f"{name} received x_0 added to the earlier layers' outputs. "
                            + shortcut_message,
                        ),
                        (
                            torch.stack(before).sum(0) if same else None,
                            "added_instead_of_concat",
                            f"{name} received the *sum* of the earlier feature maps. You added "
                            "the features instead of concatenating them: layer l must see "
                            f"[x_0, ..., x_(l-1)] side by side, k0 + k*(l-1) = "
                            f"{k0 + k * (n - 1)} channels (torch.cat(features, dim=1)).",
                        ),
                        (
                            torch.cat(before[::-1], dim=1),
                            "wrong_concat_order",
                            f"{name} received the earlier feature maps in reverse order. Keep "
                            "the order in which they were made, [x_0, x_1, ..., x_(l-1)]: the "
                            "weights of each layer belong to fixed input channels.",
                        ),
                        (
                            before[-1],
                            "chain_not_dense",
                            f"{name} received only the previous layer's output ({k} channels), "
                            "as in a plain chain of layers. In a dense block layer l sees "
                            f"every earlier feature map: k0 + k*(l-1) = {k0 + k * (n - 1)} "
                            "channels.",
                        ),
                        (
                            before[0],
                            "only_block_input",
                            f"{name} received only the block's input x_0. Layer l must also "
                            "see the outputs of all earlier layers.",
                        ),
                    ]
                stages.append(
                    _Stage(
                        f"The input of {name}",
                        torch.cat(before, dim=1),
                        rec.inputs.get(name),
                        variants,
                        not_reached=f"{name} is never called in your forward pass.",
                    )
                )
                stages.append(
                    _Stage(
                        f"The output of {name}",
                        features[n],
                        rec.outputs.get(name),
                        value_mistake="layer_differs",
                        value_hint=f"{name} got the right input, so the layer itself differs "
                        "from densenet_edu.DenseLayer: check it with check_dense_layer.",
                    )
                )
            got = out_tensor.shape[1] if out_tensor is not None and out_tensor.dim() == 4 else None
            width = (
                f"Your block returns {got} channels; a block with k0={k0}, k={k} and "
                f"{num_layers} layers must return {k0} + {num_layers}*{k} = {out_channels}. "
            )
            stages.append(
                _Stage(
                    "Your block's output",
                    expected,
                    out_tensor,
                    [
                        (
                            torch.cat([x_0] + [f + x_0 for f in features[1:]], dim=1)
                            if shortcut
                            else None,
                            "adds_block_input",
                            shortcut_message,
                        ),
                        (
                            torch.cat(features, dim=0)
                            if len({f.shape for f in features}) == 1
                            else None,
                            "concat_wrong_dim",
                            "Your block concatenates its feature maps along dimension 0, the "
                            "batch axis. " + _CHANNEL_AXIS_HINT,
                        ),
                        (
                            torch.cat(features[1:], dim=1),
                            "missing_block_input",
                            width + "You left out the block's input x_0: the block returns "
                            "[x_0, x_1, ..., x_L] concatenated.",
                        ),
                        (
                            features[-1],
                            "only_last_layer",
                            width + "You returned only the last layer's output; the block "
                            "returns everything it holds, [x_0, x_1, ..., x_L] concatenated.",
                        ),
                        (
                            torch.cat(features[:-1], dim=1),
                            "missing_last_layer",
                            width + "You left out the last layer's output x_L.",
                        ),
                        (
                            torch.cat(features[::-1], dim=1),
                            "wrong_concat_order",
                            "Your block returns the feature maps in reverse order; return "
                            "[x_0, x_1, ..., x_L] in the order they were made.",
                        ),
                    ],
                    shape_message=width
                    + f"(expected shape {_shape(expected)}, got "
                    + f"{_shape(out_tensor) if out_tensor is not None else 'no tensor'}).",
                )
            )
            _walk(stages, error, doing)
            raise _Failure(
                f"Your block's output differs: {_difference(out_tensor, expected)}.",
                "wrong_values",
            )

        if training:
            grad = torch.randn(expected.shape, generator=generator)
            _call("back-propagating through your block", out.backward, grad)
            expected.backward(grad)
            _check_gradients(leaves, ref_leaves, learner, reference, ["the block's input"])


# --------------------------------------------------------------------------- transition

# (100, 0.29): 0.29 * 100 is 28.999999999999996 in floating point, and floor(theta*m) = 29.
_COMPRESSION_CASES = [
    (15, 0.5),
    (7, 0.5),
    (256, 0.5),
    (10, 0.25),
    (11, 0.25),
    (9, 0.25),
    (12, 1.0),
    (100, 0.29),
]

# What the chapter on transitions teaches (and densenet_edu.compressed_channels does).
_ROUND_DOWN = (
    "round down, after rounding away floating-point error: "
    "math.floor(round(theta * m, 9)), or densenet_edu.compressed_channels(m, theta)."
)

_COMPRESSION_MISTAKES: list[tuple[Callable[[int, float], int], str, str]] = [
    (
        lambda m, t: math.ceil(t * m),
        "compression_ceil",
        "You rounded up. The paper's transition outputs floor(theta*m) maps: " + _ROUND_DOWN,
    ),
    (
        lambda m, t: round(t * m),
        "compression_round",
        "You rounded to the nearest integer. The paper's transition outputs floor(theta*m) "
        "maps: " + _ROUND_DOWN,
    ),
    (
        lambda m, t: math.floor(t * m + 0.5),
        "compression_round",
        "You rounded to the nearest integer. The paper's transition outputs floor(theta*m) "
        "maps: " + _ROUND_DOWN,
    ),
    (
        lambda m, t: math.floor(t * m),
        "compression_float_error",
        "You took the floor of the floating-point product: 0.29 * 100 is 28.999999999999996 "
        "in binary floating point, so math.floor (and int()) gives 28 where floor(theta*m) is "
        "29. Round away the floating-point error before the floor: "
        "math.floor(round(theta * m, 9)), or use densenet_edu.compressed_channels(m, theta).",
    ),
    (
        lambda m, t: m,
        "no_compression",
        "Your transition keeps all m channels: it ignores the compression factor theta. "
        "It should output floor(theta*m) maps.",
    ),
    (
        lambda m, t: m // 2,
        "ignores_theta",
        "Your transition always halves the channels: it ignores the compression factor theta "
        "(0.5 is only the default). Output floor(theta*m) maps.",
    ),
]


def check_transition(cls: type[nn.Module]) -> CheckResult:
    """Check a transition layer (Section 3, "Pooling layers" and "Compression").

    The class is built as ``cls(in_channels, compression)`` and must compute
    norm -> ReLU -> 1x1 conv (floor(compression * in_channels) maps, no bias) ->
    2x2 average pool with stride 2. Compression is checked on odd channel counts and
    several thetas, pooling on an odd spatial size (9x9 -> 4x4).
    """

    def body() -> str:
        _expect_class(cls, "transition", _name(cls))
        generator = torch.Generator().manual_seed(2)
        _check_compression_arithmetic(cls, generator)
        _transition_config(cls, 15, 0.5, generator)
        return (
            "Your transition matches densenet_edu.Transition: floor(theta*m) output channels "
            f"for {len(_COMPRESSION_CASES)} (m, theta) pairs (e.g. 15 -> 7 with theta=0.5), "
            "BN -> ReLU -> 1x1 conv -> 2x2 average pool halving 9x9 to 4x4, and the same "
            "outputs and gradients in train and eval mode."
        )

    return _run("check_transition", body)


def _check_compression_arithmetic(cls: type[nn.Module], generator: torch.Generator) -> None:
    answers: dict[tuple[int, float], int] = {}
    for m, theta in _COMPRESSION_CASES:
        module = _build_module(cls, (m, theta), "transition").eval()
        x = torch.randn(1, m, 4, 4, generator=generator)
        with torch.no_grad():
            out = _call(f"running your transition built with ({m}, {theta})", module, x)
        if not isinstance(out, Tensor) or out.dim() != 4:
            raise _Failure(
                f"Your transition returned {type(out).__name__}"
                f"{' of shape ' + _shape(out) if isinstance(out, Tensor) else ''}; expected a "
                "4-D tensor (batch, channels, height, width).",
                "wrong_shape",
            )
        answers[(m, theta)] = out.shape[1]
    wrong = [c for c in _COMPRESSION_CASES if answers[c] != compressed_channels(*c)]
    if not wrong:
        return
    m, theta = wrong[0]
    want = compressed_channels(m, theta)
    first = (
        f"With in_channels={m} and compression={theta} your transition outputs "
        f"{answers[(m, theta)]} channels; floor({theta}*{m}) = floor({theta * m:g}) = {want}."
    )
    for formula, mistake, explanation in _COMPRESSION_MISTAKES:
        if all(answers[c] == formula(*c) for c in _COMPRESSION_CASES):
            raise _Failure(f"{first}\n{explanation}", mistake)
    raise _Failure(first, "wrong_compression")


def _transition_config(
    cls: type[nn.Module], m: int, theta: float, generator: torch.Generator
) -> None:
    reference = _randomise(Transition(m, theta), generator)
    learner = _build_module(cls, (m, theta), "transition")
    out_channels = compressed_channels(m, theta)

    def hint(key: str, got: tuple[int, ...], want: tuple[int, ...]) -> str | None:
        if key == "conv.weight" and got[2:] != want[2:]:
            return "The transition's convolution is 1x1 (kernel_size=1)."
        if key.startswith("norm"):
            return f"norm normalises the transition's input, all {m} channels, before the conv."
        return None

    _compare_state_dicts(reference.state_dict(), learner.state_dict(), "transition", hint)
    _load(learner, reference.state_dict())
    parts = dict(learner.named_modules())
    size = 9
    for training in (True, False):
        reference.train(training)
        learner.train(training)
        (x0,) = _inputs([(2, m, size, size)], generator)
        mode = "train" if training else "eval"
        doing = f"running your transition in {mode} mode"
        leaves, inputs = _leaves([x0])
        with _Recorder({"norm": parts["norm"]}) as rec:
            try:
                out, error = learner(inputs[0]), None
            except Exception as exc:
                out, error = None, exc
        if error is None:
            _check_inputs_unchanged(inputs, [x0], "transition")

        ref_leaves, ref_inputs = _leaves([x0])
        x = ref_inputs[0]
        n = reference.norm(x)
        c = reference.conv(F.relu(n))
        expected = F.avg_pool2d(c, 2, 2)

        if error is not None or not _close(out, expected):
            if not training and error is None:
                _check_deterministic(lambda inputs=inputs: learner(inputs[0]), out, "transition")
            out_tensor = _as_tensor(out)
            got = _shape(out_tensor) if out_tensor is not None else "no tensor"
            stages = [
                _Stage(
                    "The input of norm",
                    x,
                    rec.inputs.get("norm"),
                    [
                        (
                            F.relu(x),
                            "relu_before_bn",
                            "You applied the ReLU before norm (ReLU -> BN -> conv). A "
                            "transition is BN -> ReLU -> 1x1 conv -> 2x2 average pool: "
                            "normalise first, then rectify.",
                        )
                    ],
                    not_reached="norm is never used: a transition starts with BN -> ReLU.",
                ),
                _Stage(
                    "Your transition's output",
                    expected,
                    out_tensor,
                    [
                        (
                            F.max_pool2d(c, 2, 2),
                            "max_pool",
                            "You used max pooling. DenseNet's transitions use 2x2 *average* "
                            "pooling with stride 2 (nn.AvgPool2d(2, stride=2)): every position of "
                            "the compressed maps contributes to the downsampled map.",
                        ),
                        (
                            F.avg_pool2d(reference.conv(n), 2, 2),
                            "missing_relu",
                            "There is no ReLU between norm and conv: a transition is "
                            "BN -> ReLU -> 1x1 conv -> 2x2 average pool.",
                        ),
                        (
                            F.avg_pool2d(reference.conv(F.relu(x)), 2, 2),
                            "missing_bn",
                            "norm's output is never used: the conv reads the un-normalised "
                            "input. A transition is BN -> ReLU -> 1x1 conv -> 2x2 average pool.",
                        ),
                        (
                            c,
                            "no_pooling",
                            f"Your transition keeps the {size}x{size} size: it must halve "
                            "height and width with a 2x2 average pool, stride 2.",
                        ),
                        (
                            F.avg_pool2d(c, 2, 2, ceil_mode=True),
                            "ceil_mode",
                            f"Your pooling turns {size}x{size} into "
                            f"{(size + 1) // 2}x{(size + 1) // 2} (ceil_mode=True); DenseNet's "
                            f"pool drops the odd last row and column: {size // 2}x{size // 2}.",
                        ),
                        (
                            F.avg_pool2d(c, 2, 1),
                            "pool_stride",
                            f"Your pooling uses stride 1 ({size}x{size} -> "
                            f"{size - 1}x{size - 1}); a transition pools 2x2 with stride 2, "
                            "halving height and width.",
                        ),
                    ],
                    shape_message=f"Your transition returns shape {got}; with "
                    f"in_channels={m}, compression={theta} and a {size}x{size} input it must "
                    f"return {_shape(expected)}: floor({theta}*{m}) = {out_channels} channels, "
                    f"{size // 2}x{size // 2} after the 2x2 average pool with stride 2.",
                ),
            ]
            _walk(stages, error, doing)
            raise _Failure(
                f"Your transition's output differs: {_difference(out_tensor, expected)}.",
                "wrong_values",
            )

        if training:
            grad = torch.randn(expected.shape, generator=generator)
            _call("back-propagating through your transition", out.backward, grad)
            expected.backward(grad)
            _check_gradients(leaves, ref_leaves, learner, reference, ["the transition's input"])


# --------------------------------------------------------------------------- DenseNet-121

_STAGES_121 = [
    "denseblock1",
    "transition1",
    "denseblock2",
    "transition2",
    "denseblock3",
    "transition3",
    "denseblock4",
    "norm5",
]


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
        reference = _reference_densenet121()
        _densenet_keys(reference.state_dict(), model.state_dict())
        _load(model, reference.state_dict())
        reference.eval()
        model.eval()
        _compare_121(model, reference, generator)
        return (
            "Your DenseNet-121 matches densenet_edu.densenet121() stage by stage (stem, 4 dense "
            "blocks, 3 transitions, norm5, pooling, classifier) with all "
            f"{count_parameters(reference):,} parameters loaded under torchvision's names."
        )

    return _run("check_densenet121", body)


@functools.lru_cache(maxsize=1)
def _reference_densenet121() -> nn.Module:
    """The seeded reference, built once per process (it is only read, never trained)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _randomise(densenet121(), torch.Generator().manual_seed(3)).eval()


def _get_model(model_or_factory: Any) -> nn.Module:
    if isinstance(model_or_factory, nn.Module):
        return copy.deepcopy(model_or_factory)
    if not callable(model_or_factory):
        raise _Failure(
            "Pass your model, or a function (or class) that builds it with no arguments; got "
            f"{type(model_or_factory).__name__}.",
            "wrong_argument",
        )
    return _build_module(model_or_factory, (), "DenseNet-121")


def _densenet_keys(expected: dict[str, Tensor], actual: dict[str, Tensor]) -> None:
    arch = (6, 12, 24, 16)
    for b, want in enumerate(arch, 1):
        prefix = rf"features\.denseblock{b}\.denselayer(\d+)\."
        have = {int(m[1]) for key in actual if (m := re.match(prefix, key))}
        if have and len(have) != want:
            raise _Failure(
                f"Your denseblock{b} has {len(have)} dense layers; DenseNet-121 has "
                f"(6, 12, 24, 16) layers in its four blocks, so denseblock{b} needs {want}.",
                "wrong_num_layers",
            )

    def hint(key: str, got: tuple[int, ...], want: tuple[int, ...]) -> str | None:
        if ".transition" in key and key.endswith("conv.weight") and got[0] != want[0]:
            return f"A transition compresses m channels to floor(0.5*m): {want[1]} -> {want[0]}."
        if ".denselayer" in key:
            return (
                "Inside DenseNet-121's dense layers the growth rate is k = 32 and the "
                "bottleneck has 4k = 128 maps; layer l of a block sees k0 + 32(l - 1) channels."
            )
        if key.startswith("features.conv0"):
            return "The stem is a 7x7 convolution, stride 2, padding 3, from 3 to 64 channels."
        if key.startswith("classifier"):
            return "The classifier maps the 1024 final features to 1000 classes."
        return None

    _compare_state_dicts(expected, actual, "DenseNet-121", hint)


def _compare_121(model: nn.Module, reference: nn.Module, generator: torch.Generator) -> None:
    parts = dict(model.named_modules())
    watched = {name: parts[f"features.{name}"] for name in _STAGES_121}
    watched["classifier"] = parts["classifier"]
    x = torch.randn(1, 3, 64, 64, generator=generator)
    with torch.no_grad(), _Recorder(watched) as rec:
        try:
            out, error = model(x.clone()), None
        except Exception as exc:
            out, error = None, exc

    with torch.no_grad():
        f = reference.features
        conv = f.norm0(f.conv0(x))
        stem = f.pool0(F.relu(conv))
        stages = [
            _Stage(
                "The stem's output (the input of denseblock1)",
                stem,
                rec.inputs.get("denseblock1"),
                [
                    (
                        F.relu(conv),
                        "stem_missing_pool",
                        "Your stem has no max pool: DenseNet-121's stem is a 7x7 conv with "
                        "stride 2, BN, ReLU, then a 3x3 max pool with stride 2 (Table 1), so a "
                        "64x64 image becomes 16x16 before the first block.",
                    ),
                    (
                        F.max_pool2d(F.relu(conv), 3, 2),
                        "stem_pool_padding",
                        "Your stem's max pool has no padding: a 3x3 pool with stride 2 turns the "
                        f"{conv.shape[-1]}x{conv.shape[-1]} map into "
                        f"{(conv.shape[-1] - 3) // 2 + 1}x{(conv.shape[-1] - 3) // 2 + 1} "
                        f"instead of {stem.shape[-1]}x{stem.shape[-1]}. Use "
                        "nn.MaxPool2d(3, stride=2, padding=1), as torchvision does (Table 1: "
                        "112x112 -> 56x56).",
                    ),
                    (
                        F.avg_pool2d(F.relu(conv), 3, 2, 1),
                        "stem_avg_pool",
                        "Your stem uses average pooling; Table 1's stem uses a 3x3 *max* pool "
                        "with stride 2 (padding 1).",
                    ),
                    (
                        f.pool0(conv),
                        "missing_relu",
                        "Your stem has no ReLU between norm0 and the pool: conv0 -> norm0 -> "
                        "ReLU -> max pool.",
                    ),
                ],
                not_reached="features.denseblock1 is never called in your forward pass.",
            )
        ]
        h = stem
        for name in _STAGES_121:
            block = getattr(f, name)
            variants = []
            if name.startswith("transition"):
                pre = block.conv(F.relu(block.norm(h)))
                variants = [
                    (
                        F.max_pool2d(pre, 2, 2),
                        "max_pool",
                        f"{name} uses max pooling; transitions use a 2x2 average pool, stride 2.",
                    ),
                    (
                        F.avg_pool2d(block.conv(block.norm(h)), 2, 2),
                        "missing_relu",
                        f"{name} has no ReLU between its norm and conv.",
                    ),
                ]
            h = block(h)
            stages.append(
                _Stage(
                    f"The output of features.{name}",
                    h,
                    rec.outputs.get(name),
                    variants,
                    not_reached=f"features.{name} is never called in your forward pass.",
                    value_hint=f"Its input matched, so features.{name} itself differs "
                    "(or your forward pass skips or reorders something before it).",
                )
            )
        pooled = F.adaptive_avg_pool2d(F.relu(h), 1).flatten(1)
        stages.append(
            _Stage(
                "The input of the classifier (pooled features)",
                pooled,
                rec.inputs.get("classifier"),
                [
                    (
                        F.adaptive_avg_pool2d(h, 1).flatten(1),
                        "missing_final_relu",
                        "There is no ReLU between norm5 and the global pooling: torchvision's "
                        "forward is relu(features(x)) -> adaptive_avg_pool2d -> flatten -> "
                        "classifier.",
                    ),
                    (
                        F.adaptive_max_pool2d(F.relu(h), 1).flatten(1),
                        "global_max_pool",
                        "You pooled globally with max; DenseNet uses global *average* pooling "
                        "(F.adaptive_avg_pool2d(x, 1)).",
                    ),
                ],
                not_reached="classifier is never called in your forward pass.",
            )
        )
        logits = reference.classifier(pooled)
        stages.append(
            _Stage(
                "The output of your model",
                logits,
                _as_tensor(out),
                [
                    (
                        logits.softmax(1),
                        "softmax",
                        "Your model returns probabilities (softmax). Return the raw logits, as "
                        "torchvision does; nn.CrossEntropyLoss applies log-softmax itself.",
                    )
                ],
            )
        )
    if error is None and not _close(_as_tensor(out), logits):
        _check_deterministic(lambda: model(x.clone()), out, "model")
    _walk(stages, error, "running your DenseNet-121 on a 1x3x64x64 image")
