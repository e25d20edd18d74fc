"""The paper's four conclusions about feature reuse (Section 5), as numbers with a baseline.

A statistic read off a trained network means little on its own: a freshly initialised
network spreads its weights evenly, so it "agrees" with any claim that weights are spread.
:func:`compare_with_untrained` therefore puts every statistic beside the same statistic of
untrained copies of the network and calls a conclusion supported only when the trained
value lies beyond all of them by a stated margin.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from densenet_edu.config import DenseNetConfig
from densenet_edu.reuse.matrices import feature_reuse

__all__ = [
    "CONCLUSIONS",
    "Conclusion",
    "compare_with_untrained",
    "reuse_statistics",
    "untrained_copy",
    "verdict",
]


@dataclass(frozen=True)
class Conclusion:
    """One of the paper's Section 5 observations and the statistic that tests it.

    ``direction`` is ``"higher"`` when the paper's claim means a larger statistic than an
    untrained network's, ``"lower"`` when it means a smaller one.
    """

    number: int
    claim: str
    statistic: str
    description: str
    direction: str


#: The paper's four conclusions (Section 5), each with the key of its statistic in
#: :func:`reuse_statistics`; the third is tested by two statistics.
CONCLUSIONS = (
    Conclusion(
        1,
        "dense layers spread their weights over many inputs of their block",
        "layer_spread",
        "share of sources with at least half the column's largest weight (dense layers)",
        "higher",
    ),
    Conclusion(
        2,
        "transition layers spread their weights over the whole preceding block",
        "transition_spread",
        "share of sources with at least half the column's largest weight (transitions)",
        "higher",
    ),
    Conclusion(
        3,
        "blocks 2 and 3 give the least weight to the transition's outputs",
        "input_least",
        "share of dense layers in blocks 2+ whose smallest entry is source 0",
        "higher",
    ),
    Conclusion(
        3,
        "blocks 2 and 3 give the least weight to the transition's outputs",
        "input_ratio",
        "weight on source 0 / mean weight on the other sources (blocks 2+)",
        "lower",
    ),
    Conclusion(
        4,
        "the classifier concentrates on the final feature maps",
        "classifier_ratio",
        "classifier: mean weight on the later half of block 3's sources / earlier half",
        "higher",
    ),
)


def _share_near_max(column: np.ndarray) -> float:
    return float(np.mean(column >= 0.5 * column.max()))


def reuse_statistics(matrices: Sequence[np.ndarray]) -> dict[str, float]:
    """The numbers behind the paper's four conclusions, from :func:`feature_reuse`'s output.

    - ``layer_spread``: for each dense layer with two or more sources, the share of its
      sources that get at least half of its largest weight; averaged over those layers.
    - ``transition_spread``: the same share for the transitions' columns (not the classifier).
    - ``input_least``: in blocks 2, 3, ..., the share of dense layers with two or more
      sources whose smallest entry is source 0 (the previous transition's output).
    - ``input_ratio``: for the same layers, the weight on source 0 divided by the mean weight
      on the other sources; averaged.
    - ``classifier_ratio``: in the classifier's column (last block), the mean weight on the
      later half of the sources divided by the mean on the earlier half (the middle source
      of an odd count goes to the later half).

    An untrained network gives about 1, 1, 1 / (number of sources), 1 and 1.
    """
    if len(matrices) < 2:
        raise ValueError(f"need the matrices of 2 or more dense blocks, got {len(matrices)}")
    layer, transition, least, ratio = [], [], [], []
    for b, m in enumerate(matrices):
        size = m.shape[0]
        for j in range(1, size - 1):  # dense layers that read 2+ sources
            column = m[: j + 1, j]
            layer.append(_share_near_max(column))
            if b >= 1:
                least.append(float(np.argmin(column) == 0))
                ratio.append(float(column[0] / column[1:].mean()))
        if b < len(matrices) - 1:
            transition.append(_share_near_max(m[:, -1]))
    last = matrices[-1][:, -1]
    half = len(last) // 2
    return {
        "layer_spread": float(np.mean(layer)),
        "transition_spread": float(np.mean(transition)),
        "input_least": float(np.mean(least)),
        "input_ratio": float(np.mean(ratio)),
        "classifier_ratio": float(last[half:].mean() / last[:half].mean()),
    }


def verdict(trained: float, untrained: Iterable[float], direction: str, margin: float) -> str:
    """``"agrees"`` when ``trained`` lies beyond every untrained value by more than ``margin``
    in the paper's ``direction``; ``"opposite"`` when it does so the other way; otherwise
    ``"same as untrained"``.
    """
    if direction not in ("higher", "lower"):
        raise ValueError(f"direction must be 'higher' or 'lower', got {direction!r}")
    values = list(untrained)
    if not values:
        raise ValueError("need at least one untrained value to compare with")
    above = trained > max(values) + margin
    below = trained < min(values) - margin
    if (above and direction == "higher") or (below and direction == "lower"):
        return "agrees"
    if above or below:
        return "opposite"
    return "same as untrained"


def untrained_copy(model: nn.Module, seed: int) -> nn.Module:
    """A freshly initialised DenseNet with ``model``'s architecture (``model.config``).

    The global random state is left as it was.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, DenseNetConfig):
        raise TypeError("untrained_copy needs a densenet_edu.DenseNet (it has a .config)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return type(model)(config).eval()


def compare_with_untrained(
    model: nn.Module, seeds: Sequence[int] = tuple(range(10)), margin: float = 0.1
) -> list[dict[str, object]]:
    """Each statistic of :data:`CONCLUSIONS` for ``model`` beside untrained copies of it.

    Returns one row per statistic: ``conclusion`` (1-4), ``statistic``, ``description``,
    ``direction``, ``trained``, ``untrained_min``, ``untrained_max`` (over one untrained
    copy per seed) and ``verdict`` (see :func:`verdict`, with ``margin``).
    """
    trained = reuse_statistics(feature_reuse(model))
    baseline = [reuse_statistics(feature_reuse(untrained_copy(model, s))) for s in seeds]
    rows = []
    for c in CONCLUSIONS:
        values = [b[c.statistic] for b in baseline]
        rows.append(
            {
                "conclusion": c.number,
                "statistic": c.statistic,
                "description": c.description,
                "direction": c.direction,
                "trained": trained[c.statistic],
                "untrained_min": min(values),
                "untrained_max": max(values),
                "verdict": verdict(trained[c.statistic], values, c.direction, margin),
            }
        )
    return rows
