"""Feature reuse: which earlier feature maps does each layer actually use? (Figure 5)

Section 5 of the paper ("Feature Reuse") trains a DenseNet (L=40, k=12) on C10+ and asks,
for every convolutional layer l of a dense block, how strongly its filters weigh the maps
that come from each earlier source s: the block's input (s = 0) or dense layer s's k new
maps. Because layer l reads the *concatenation* [x_0, x_1, ..., x_{l-1}], the input
channels of its first convolution split into one contiguous slice per source, and the
average absolute weight over a slice measures how much the layer listens to that source.

The transition after a block (and the classifier after the last block) reads the same
concatenation with its 1x1 convolution (linear layer), so it gets a column of its own.

A statistic read off a trained network means little on its own: a freshly initialised
network spreads its weights evenly, so it "agrees" with any claim that weights are spread.
:func:`compare_with_untrained` therefore puts every statistic beside the same statistic of
untrained copies of the network and calls a conclusion supported only when the trained
value lies beyond all of them by a stated margin.

:func:`slim_checkpoint` writes a small copy of a training checkpoint (weights in float16,
no optimiser state) that :func:`densenet_edu.train.load_model` reads; the book ships one,
:data:`FIGURE5_CHECKPOINT`, made by :data:`FIGURE5_COMMAND`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from densenet_edu.layers import DenseBlock, Transition

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

#: A plain DenseNet (L=28, k=12, no bottleneck, no compression) trained on the digits (8x8)
#: for 30 epochs with the paper's recipe except a weight decay of 0.034 instead of 1e-4, so
#: that the run's weight-decay budget (see :func:`weight_decay_budget`) matches the paper's
#: 300 CIFAR epochs; weights stored in float16 (about 1 MB). Made by :data:`FIGURE5_COMMAND`;
#: read it with ``densenet_edu.train.load_model``.
FIGURE5_CHECKPOINT = Path(__file__).parent / "checkpoints" / "figure5_digits_L28_k12.pt"

#: The shell commands that made :data:`FIGURE5_CHECKPOINT` (from the repository root; a few
#: minutes on two idle CPU cores; the run shipped took 22 minutes on two busy ones).
FIGURE5_COMMAND = (
    "python -m densenet_edu.train --dataset digits --image-size 8 --depth 28 "
    "--growth-rate 12 --no-bottleneck --compression 1 --epochs 30 --weight-decay 0.034 "
    "--out-dir runs/figure5\n"
    'python -c "from densenet_edu.reuse import slim_checkpoint; '
    "slim_checkpoint('runs/figure5/checkpoint.pt', "
    "'densenet_edu/checkpoints/figure5_digits_L28_k12.pt')\""
)


def feature_reuse(model: nn.Module) -> list[np.ndarray]:
    """The paper's Figure 5 numbers: mean |weight| from each source to each target, per block.

    For a block with L dense layers, returns an array ``W`` of shape (L + 1, L + 1):

    - row s (0..L) is the source: 0 = the block's input (the stem's or the previous
      transition's output), s >= 1 = the k maps dense layer s adds;
    - column j (0..L) is the target: j = l - 1 for dense layer l (its ``conv1``, the
      1x1 bottleneck or the 3x3 convolution that reads the concatenation), and the last
      column (j = L) is the transition after the block, or the classifier after the last one;
    - ``W[s, j]`` is the mean absolute weight over all filter entries that read the
      source's channels (output filters x source channels x kernel height x width),
      i.e. the L1 norm normalised by the number of weights (the paper: "normalized by
      the number of input feature-maps"); NaN where layer j + 1 cannot see source s (s > j).

    The same matrix layout as the paper's heat maps: source on the vertical axis (row 0
    at the top), target on the horizontal axis. BatchNorm scales in front of the
    convolutions are not folded in, as in the paper.

    Args:
        model: a ``densenet_edu.DenseNet`` (any stem, any number of blocks).
    """
    features = getattr(model, "features", None)
    classifier = getattr(model, "classifier", None)
    if not isinstance(features, nn.Sequential) or not isinstance(classifier, nn.Linear):
        raise TypeError("feature_reuse needs a densenet_edu.DenseNet (features + classifier)")
    children = list(features.children())
    blocks = [i for i, m in enumerate(children) if isinstance(m, DenseBlock)]
    if not blocks:
        raise TypeError("feature_reuse found no DenseBlock in model.features")
    result = []
    for i in blocks:
        block: DenseBlock = children[i]
        after = children[i + 1] if i + 1 < len(children) else None
        reader = after.conv if isinstance(after, Transition) else classifier
        bounds = _source_bounds(block)
        num_sources = len(bounds) - 1
        matrix = np.full((num_sources, num_sources), np.nan)
        targets = [layer.conv1.weight for layer in block.values()] + [reader.weight]
        for j, weight in enumerate(targets):
            weight = weight.detach().abs().float()
            if weight.dim() == 2:  # the classifier: (classes, channels)
                weight = weight[:, :, None, None]
            if weight.shape[1] != bounds[j + 1]:
                raise ValueError(
                    f"target {j + 1} of block {len(result) + 1} reads {weight.shape[1]} channels, "
                    f"expected {bounds[j + 1]}; is the model a densenet_edu DenseNet?"
                )
            for s in range(j + 1):
                matrix[s, j] = weight[:, bounds[s] : bounds[s + 1]].mean().item()
        result.append(matrix)
    return result


def _source_bounds(block: DenseBlock) -> list[int]:
    """Channel offsets of the sources in the block's concatenation: [0, k0, k0 + k, ...]."""
    return [0] + [block.in_channels + block.growth_rate * s for s in range(block.num_layers + 1)]


def plot_feature_reuse(
    matrices: Sequence[np.ndarray] | Mapping[str, Sequence[np.ndarray]],
    normalize: str | None = "block",
    cmap: str = "viridis",
    last_labels: Sequence[str] | None = None,
    title: str | None = None,
):
    """Heat maps of :func:`feature_reuse`, one panel per dense block, as in Figure 5.

    Args:
        matrices: the list :func:`feature_reuse` returns, or a mapping ``{label: list}``
            to draw several networks (e.g. trained and untrained) one row each, the
            label above its row.
        normalize: ``"block"`` divides each block's values by that block's largest one;
            ``"column"`` divides each target's column by its own largest entry, which shows
            *which sources* each layer prefers regardless of its overall weight scale (He
            initialisation makes 1x1 transition weights larger than 3x3 ones); ``None``
            plots the raw values.
        cmap: a matplotlib colour map (the paper uses a jet-like one; viridis reads better).
        last_labels: tick labels for each block's last column; by default "T1", "T2", ...
            for transitions and "C" for the classifier.
        title: the figure's title.

    Returns:
        The matplotlib figure. White cells are connections that do not exist.
    """
    import matplotlib.pyplot as plt

    if normalize not in ("block", "column", None):
        raise ValueError(f"normalize must be 'block', 'column' or None, got {normalize!r}")
    rows = dict(matrices) if isinstance(matrices, Mapping) else {"": matrices}
    n = max(len(m) for m in rows.values())
    height = 3.6 + 0.35 * bool(title) + 0.35 * (len(rows) > 1)
    fig = plt.figure(figsize=(3.6 * n + 0.8, height * len(rows)), layout="constrained")
    subfigs = fig.subfigures(len(rows), 1, squeeze=False)[:, 0] if len(rows) > 1 else [fig]
    for subfig, (label, row) in zip(subfigs, rows.items(), strict=True):
        _plot_row(subfig, row, normalize, cmap, last_labels)
        if label:  # left-aligned, so that it cannot collide with the middle panel's title
            subfig.suptitle(label, fontweight="bold", x=0.01, ha="left")
    if title:
        fig.suptitle(title)
    return fig


def _plot_row(fig, matrices, normalize, cmap, last_labels) -> None:
    """One row of heat maps, one panel per block, into a figure or subfigure."""
    import matplotlib.pyplot as plt

    n = len(matrices)
    if last_labels is None:
        last_labels = [f"T{b + 1}" for b in range(n - 1)] + ["C"]
    axes = np.atleast_1d(fig.subplots(1, n))
    colours = plt.get_cmap(cmap).with_extremes(bad="white")
    image = None
    for b, (ax, matrix) in enumerate(zip(axes, matrices, strict=True)):
        if normalize == "column":
            values = matrix / np.nanmax(matrix, axis=0, keepdims=True)
        else:
            values = matrix / np.nanmax(matrix) if normalize else matrix
        image = ax.imshow(
            np.ma.masked_invalid(values),
            cmap=colours,
            vmin=0 if normalize else None,
            vmax=1 if normalize else None,
        )
        size = matrix.shape[0]
        # Outline the last column: the transition (or classifier) reading the whole block.
        ax.add_patch(
            plt.Rectangle((size - 1.5, -0.5), 1, size, fill=False, edgecolor="black", lw=1.5)
        )
        step = max(1, size // 6)
        cols = list(range(0, size - 1, step))
        ax.set_xticks(cols + [size - 1], [str(c + 1) for c in cols] + [last_labels[b]])
        ax.set_yticks(list(range(0, size, step)))
        ax.set_xlabel("target layer ℓ")
        ax.set_ylabel("source layer s")
        ax.set_title(f"dense block {b + 1}")
        if not normalize:
            fig.colorbar(image, ax=ax, shrink=0.8)
    if normalize and image is not None:
        bar = fig.colorbar(image, ax=list(axes), shrink=0.8)
        bar.set_label(f"mean |weight| / {normalize} max")


# --- the paper's four conclusions as numbers ---------------------------------------------------


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
    if not isinstance(config, Mapping):
        raise TypeError("untrained_copy needs a densenet_edu.DenseNet (it has a .config)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return type(model)(**config).eval()


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


def weight_decay_budget(
    epochs: int,
    steps_per_epoch: int,
    weight_decay: float = 1e-4,
    lr: float = 0.1,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> float:
    """How far weight decay alone pulls a weight towards zero over a run: sum of lr x decay.

    Each SGD step multiplies a weight by (1 - lr * weight_decay) before the gradient acts,
    so a weight that gets no consistent gradient ends near ``exp(-budget)`` times its
    initial value (momentum aside). The learning rate follows ``densenet_edu.train``'s step
    schedule (:func:`densenet_edu.train.milestone_epochs`).
    """
    from densenet_edu.train import milestone_epochs

    drops = milestone_epochs(epochs, milestones)
    total_lr = sum(lr * gamma ** sum(e >= d for d in drops) for e in range(epochs))
    return weight_decay * total_lr * steps_per_epoch


def steps_per_epoch(num_images: int, batch_size: int = 64) -> int:
    """SGD steps in one epoch: one per batch, the last one possibly smaller."""
    return math.ceil(num_images / batch_size)


# --- a small checkpoint to ship --------------------------------------------------------------


def slim_checkpoint(
    src: str | os.PathLike, dst: str | os.PathLike, dtype: torch.dtype = torch.float16
) -> Path:
    """Copy a training checkpoint without its optimiser state, weights stored as ``dtype``.

    The copy keeps the architecture, the recipe and the per-epoch history, so
    ``densenet_edu.train.load_model`` and ``load_checkpoint`` read it as they read the
    original (the weights come back as float32); it cannot be resumed.
    """
    from densenet_edu.train import load_checkpoint

    state = load_checkpoint(src)
    keep = ("format", "epoch", "model_config", "param_shapes", "recipe", "history")
    slim = {k: state[k] for k in keep if k in state}
    slim["model"] = {
        k: v.to(dtype) if v.is_floating_point() else v for k, v in state["model"].items()
    }
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(slim, dst)
    return dst
