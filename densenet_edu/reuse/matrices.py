"""Feature reuse: which earlier feature maps does each layer actually use? (Figure 5)

Section 5 of the paper ("Feature Reuse") trains a DenseNet (L=40, k=12) on C10+ and asks,
for every convolutional layer l of a dense block, how strongly its filters weigh the maps
that come from each earlier source s: the block's input (s = 0) or dense layer s's k new
maps. Because layer l reads the *concatenation* [x_0, x_1, ..., x_{l-1}], the input
channels of its first convolution split into one contiguous slice per source, and the
average absolute weight over a slice measures how much the layer listens to that source.

The transition after a block (and the classifier after the last block) reads the same
concatenation with its 1x1 convolution (linear layer), so it gets a column of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import nn

from densenet_edu.layers import DenseBlock, Transition

__all__ = ["feature_reuse", "plot_feature_reuse"]


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
