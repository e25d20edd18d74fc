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
is a :class:`Mistake` naming the diagnosis; it equals its short code
(``"added_instead_of_concat"``, ``"max_pool"``, ...).

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

How the package is laid out: ``result`` (the verdict), ``mistakes`` (the codes),
``report`` (learner errors), ``harness`` (running learner and reference side by side,
comparing stage by stage), ``tensors`` and ``state_dicts`` (comparisons), and one module
per checker holding its catalogue of mistakes as data.
"""

from densenet_edu.exercises.channel_count import check_channel_count
from densenet_edu.exercises.dense_block import check_dense_block
from densenet_edu.exercises.dense_layer import check_dense_layer
from densenet_edu.exercises.densenet121 import check_densenet121
from densenet_edu.exercises.mistakes import Mistake
from densenet_edu.exercises.result import CheckResult
from densenet_edu.exercises.transition import check_transition

__all__ = [
    "CheckResult",
    "Mistake",
    "check_channel_count",
    "check_dense_block",
    "check_dense_layer",
    "check_densenet121",
    "check_transition",
]
