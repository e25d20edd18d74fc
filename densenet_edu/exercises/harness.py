"""The one harness every module checker runs on: learner and reference side by side.

A module checker (dense layer, dense block, transition) describes itself as a
:class:`ModuleCheck`; :func:`compare_in_both_modes` then does the same choreography for
all of them, in train mode and in eval mode:

1. run the learner's module on fresh random inputs, recording what its watched
   submodules receive and return (:class:`Recorder`);
2. check that it left its inputs unchanged, and run the reference on the same inputs;
3. if the outputs differ, find the first :class:`Stage` of the data flow that differs
   and name the mistake from the stage's catalogue of :class:`Slip` s
   (:func:`compare_stages`);
4. in train mode, back-propagate the same gradient through both and compare the
   gradients of the inputs and of every parameter.

A stage's catalogue is data: each slip says what the stage would hold if the learner made
that mistake (a function of the reference's :class:`Trace`) and how to explain it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor, nn

from densenet_edu.exercises.mistakes import Mistake
from densenet_edu.exercises.report import call, learner_error
from densenet_edu.exercises.result import Failure
from densenet_edu.exercises.tensors import as_tensor, close, difference, leaves, random_inputs
from densenet_edu.exercises.tensors import shape as shape_of

__all__ = [
    "ModuleCheck",
    "Recorder",
    "Slip",
    "Stage",
    "Trace",
    "check_deterministic",
    "check_gradients",
    "check_inputs_unchanged",
    "compare_in_both_modes",
    "compare_stages",
    "first_named",
    "input_of",
    "output_of",
    "record",
    "result",
]


class Trace(SimpleNamespace):
    """The reference's tensors at every stage and the numbers the messages quote.

    Before the stages are compared the harness adds what the learner's module did:
    ``inputs`` and ``outputs`` of its watched submodules, and ``result``, its output
    as a tensor (``None`` when it returned none).
    """


#: A diagnosis: a fixed sentence, or one built from the trace when it quotes numbers.
Message = str | Callable[[Trace], str]


def _text(message: Message, trace: Trace) -> str:
    return message(trace) if callable(message) else message


@dataclass(frozen=True)
class Slip:
    """A known mistake at one stage: what the stage holds when the learner makes it."""

    mistake: Mistake
    produces: Callable[[Trace], Tensor | None]
    message: Message


@dataclass(frozen=True)
class Stage:
    """One point of the data flow to compare, with the mistakes that explain a difference.

    Attributes:
        label: how the messages name this point ("The input of norm1").
        expected: the reference's tensor here.
        actual: the learner's tensor here (``None`` when never computed).
        slips: the catalogue of known mistakes, tried in order.
        not_reached: the diagnosis when the learner never computed this point.
        shape_message: the diagnosis of a wrong shape (default: both shapes).
        value_mistake, value_hint: the diagnosis of right shape, wrong values.
    """

    label: str
    expected: Callable[[Trace], Tensor]
    actual: Callable[[Trace], Tensor | None]
    slips: Sequence[Slip] = ()
    not_reached: Message = ""
    shape_message: Message = ""
    value_mistake: Mistake = Mistake.WRONG_VALUES
    value_hint: Message = ""


def input_of(name: str) -> Callable[[Trace], Tensor | None]:
    """The recorded first input of the learner's submodule ``name``."""
    return lambda t: t.inputs.get(name)


def output_of(name: str) -> Callable[[Trace], Tensor | None]:
    """The recorded first output of the learner's submodule ``name``."""
    return lambda t: t.outputs.get(name)


def result(t: Trace) -> Tensor | None:
    """The learner's output."""
    return t.result


class Recorder:
    """Records the first input and output of named submodules of the learner's module."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.modules = modules
        self.inputs: dict[str, Tensor | None] = {}
        self.outputs: dict[str, Tensor | None] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> Recorder:
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
                self.inputs[name] = as_tensor(args[0]) if args else None

        return hook

    def _post(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if name not in self.outputs:
                self.outputs[name] = as_tensor(output)

        return hook


def record(
    run: Callable[[], Any], watched: dict[str, nn.Module]
) -> tuple[Any, Exception | None, Recorder]:
    """Run the learner's code once: its output (or the exception it raised) and a recording."""
    with Recorder(watched) as recorder:
        try:
            return run(), None, recorder
        except Exception as exc:  # the learner's code may raise anything
            return None, exc, recorder


def compare_stages(
    stages: Sequence[Stage], trace: Trace, error: Exception | None, doing: str
) -> None:
    """Raise a diagnosis for the first stage that differs (or the learner's own error)."""
    for stage in stages:
        expected, actual = stage.expected(trace), stage.actual(trace)
        if close(actual, expected):
            continue
        for slip in stage.slips:
            produced = slip.produces(trace)
            if produced is not None and close(actual, produced):
                details = learner_error(error, doing).message if error is not None else ""
                raise Failure(
                    _text(slip.message, trace),
                    slip.mistake,
                    f"(your code then failed: {details})" if details else "",
                )
        if actual is None:
            if error is not None:
                raise learner_error(error, doing)
            message = _text(stage.not_reached, trace) or f"{stage.label} was never computed."
            raise Failure(message, Mistake.NOT_USED)
        if actual.shape != expected.shape:
            message = _text(stage.shape_message, trace) or (
                f"{stage.label} has shape {shape_of(actual)}, expected {shape_of(expected)}."
            )
            raise Failure(message, Mistake.WRONG_SHAPE)
        hint = _text(stage.value_hint, trace)
        message = (
            f"{stage.label} has the right shape {shape_of(expected)} but different values: "
            f"{difference(actual, expected)}."
        )
        raise Failure(message + (f" {hint}" if hint else ""), stage.value_mistake)
    if error is not None:
        raise learner_error(error, doing)


@dataclass
class ModuleCheck:
    """One configuration of a module checker, as the harness needs it.

    Attributes:
        what: the module in messages: "layer", "block", "transition".
        learner, reference: the two modules, the reference weights already loaded.
        input_shapes: the random inputs, (N, C, H, W) each.
        input_names: the inputs in messages ("the input feature map x_0").
        takes_list: the module receives the list of inputs (a dense layer), not one tensor.
        watched: the learner's submodules whose inputs and outputs are recorded.
        doing: what the learner's code is doing, with a ``{mode}`` field.
        trace: the reference's forward pass on ``(inputs, raw_inputs)``; the trace's
            ``out`` is the expected output. ``inputs`` track gradients, ``raw_inputs``
            are the same values without.
        stages: the data flow to compare, in order, ending with the output.
        train_checks: extra checks after the forward pass in train mode.
    """

    what: str
    learner: nn.Module
    reference: nn.Module
    input_shapes: Sequence[tuple[int, ...]]
    input_names: Sequence[str]
    takes_list: bool
    watched: Sequence[str]
    doing: str
    trace: Callable[[list[Tensor], list[Tensor]], Trace]
    stages: Sequence[Stage]
    train_checks: Callable[[], None] | None = None

    def run(self, inputs: Sequence[Tensor]) -> Any:
        return self.learner(list(inputs)) if self.takes_list else self.learner(inputs[0])


def compare_in_both_modes(check: ModuleCheck, generator: torch.Generator) -> None:
    """Forward (and, in train mode, backward) in train then eval mode; raise what differs."""
    parts = dict(check.learner.named_modules())
    watched = {name: parts[name] for name in check.watched}
    for training in (True, False):
        check.reference.train(training)
        check.learner.train(training)
        raw = random_inputs(check.input_shapes, generator)
        doing = check.doing.format(mode="train" if training else "eval")
        grads, inputs = leaves(raw)
        out, error, seen = record(lambda inputs=inputs: check.run(inputs), watched)
        if error is None:
            check_inputs_unchanged(inputs, raw, check.what)
        ref_grads, ref_inputs = leaves(raw)
        trace = check.trace(ref_inputs, raw)
        if error is not None or not close(out, trace.out):
            if not training and error is None:
                check_deterministic(lambda inputs=inputs: check.run(inputs), out, check.what)
            trace.inputs, trace.outputs, trace.result = seen.inputs, seen.outputs, as_tensor(out)
            compare_stages(check.stages, trace, error, doing)
            raise Failure(
                f"Your {check.what}'s output differs: {difference(trace.result, trace.out)}.",
                Mistake.WRONG_VALUES,
            )
        if training:
            if check.train_checks is not None:
                check.train_checks()
            grad = torch.randn(trace.out.shape, generator=generator)
            call(f"back-propagating through your {check.what}", out.backward, grad)
            trace.out.backward(grad)
            check_gradients(check, grads, ref_grads)


def check_gradients(
    check: ModuleCheck, grads: Sequence[Tensor], ref_grads: Sequence[Tensor]
) -> None:
    """The gradients of the inputs, then of every parameter the reference trains."""
    for name, leaf, ref_leaf in zip(check.input_names, grads, ref_grads, strict=True):
        if leaf.grad is None:
            raise Failure(
                f"{name} receives no gradient from your code: something cut the autograd graph "
                "(.detach(), .data, torch.no_grad() or a NumPy round trip). Earlier layers "
                "learn through these gradients.",
                Mistake.NO_GRADIENT,
            )
        if not close(leaf.grad, ref_leaf.grad):
            raise Failure(
                f"The forward pass matches, but the gradient with respect to {name} differs: "
                f"{difference(leaf.grad, ref_leaf.grad)}.",
                Mistake.WRONG_GRADIENT,
            )
    reference_params = dict(check.reference.named_parameters())
    for name, param in check.learner.named_parameters():
        ref_param = reference_params.get(name)
        if ref_param is None or ref_param.grad is None:
            continue
        if param.grad is None:
            raise Failure(
                f"The parameter {name} receives no gradient: your forward pass does not use it "
                "in a differentiable way.",
                Mistake.NO_GRADIENT,
            )
        if not close(param.grad, ref_param.grad):
            raise Failure(
                f"The forward pass matches, but the gradient of {name} differs: "
                f"{difference(param.grad, ref_param.grad)}.",
                Mistake.WRONG_GRADIENT,
            )


def check_inputs_unchanged(
    inputs: Sequence[Tensor], originals: Sequence[Tensor], what: str
) -> None:
    """Later layers read the same earlier maps: the learner must not modify them."""
    for i, (now, before) in enumerate(zip(inputs, originals, strict=True)):
        if not torch.equal(now.detach(), before):
            raise Failure(
                f"Your {what} changed its input x_{i} in place (an in-place ReLU or += on an "
                "input?). In a dense block every later layer reads the same earlier feature "
                "maps, so they must stay unchanged; make the first operation out of place.",
                Mistake.MODIFIED_INPUT,
            )


def check_deterministic(run: Callable[[], Any], first: Any, what: str) -> None:
    """In eval mode the same input must give the same output; dropout left on breaks that."""
    first_tensor = as_tensor(first)
    if first_tensor is None:
        return
    try:
        with torch.no_grad():
            again = as_tensor(run())
    except Exception:  # the learner's code may raise anything; the caller reports it
        return
    if again is None or again.shape != first_tensor.shape or torch.equal(again, first_tensor):
        return
    raise Failure(
        f"Your {what} gives different outputs for the same input in eval mode: something "
        "random is still switched on, most likely dropout. After .eval() dropout must be off: "
        "use an nn.Dropout module (eval() switches it off) or "
        "F.dropout(x, p, training=self.training); F.dropout's training argument defaults "
        "to True.",
        Mistake.DROPOUT_IN_EVAL,
    )


def first_named(configs: Sequence[Callable[[], None]]) -> None:
    """Run configurations in order. When one fails only because the learner's code raised,
    try the remaining ones for a failure that names the mistake, else report the first."""
    first: Failure | None = None
    for run in configs:
        try:
            run()
        except Failure as failure:
            if failure.mistake not in (Mistake.RAISED, Mistake.NOT_IMPLEMENTED):
                raise
            first = first or failure
            if failure.mistake == Mistake.NOT_IMPLEMENTED:
                break
    if first is not None:
        raise first
