"""Feature reuse: which earlier feature maps does each layer actually use? (Figure 5)

Section 5 of the paper ("Feature Reuse") trains a DenseNet (L=40, k=12) on C10+ and asks,
for every convolutional layer l of a dense block, how strongly its filters weigh the maps
that come from each earlier source s: the block's input (s = 0) or dense layer s's k new
maps. Because layer l reads the *concatenation* [x_0, x_1, ..., x_{l-1}], the input
channels of its first convolution split into one contiguous slice per source, and the
average absolute weight over a slice measures how much the layer listens to that source.

Three modules:

- ``reuse.matrices``: :func:`feature_reuse` (the heat maps' numbers) and
  :func:`plot_feature_reuse` (the heat maps);
- ``reuse.conclusions``: the paper's four conclusions as statistics
  (:func:`reuse_statistics`), each compared with untrained copies of the network
  (:func:`compare_with_untrained`, :func:`verdict`);
- ``reuse.figure5_run``: the run behind the book's figure, its weight-decay budget
  (:func:`weight_decay_budget`) and its shipped checkpoint (:data:`FIGURE5_CHECKPOINT`,
  :func:`slim_checkpoint`).
"""

from densenet_edu.reuse.conclusions import (
    CONCLUSIONS,
    Conclusion,
    compare_with_untrained,
    reuse_statistics,
    untrained_copy,
    verdict,
)
from densenet_edu.reuse.figure5_run import (
    FIGURE5_CHECKPOINT,
    FIGURE5_COMMAND,
    slim_checkpoint,
    steps_per_epoch,
    weight_decay_budget,
)
from densenet_edu.reuse.matrices import feature_reuse, plot_feature_reuse

__all__ = [
    "CONCLUSIONS",
    "FIGURE5_CHECKPOINT",
    "FIGURE5_COMMAND",
    "Conclusion",
    "compare_with_untrained",
    "feature_reuse",
    "plot_feature_reuse",
    "reuse_statistics",
    "slim_checkpoint",
    "steps_per_epoch",
    "untrained_copy",
    "verdict",
    "weight_decay_budget",
]
