"""Learning curves: the per-epoch records of ``metrics.jsonl``, read and plotted."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["plot_learning_curves", "read_log"]


def read_log(path: str | os.PathLike) -> list[dict[str, float]]:
    """The per-epoch records of a ``metrics.jsonl`` file."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_learning_curves(
    log: str | os.PathLike | Sequence[Mapping[str, float]] | Mapping[str, Any],
    title: str | None = None,
):
    """Loss and accuracy per epoch, training and test, from a log file or its records.

    Args:
        log: a ``metrics.jsonl`` path, a list of records (``TrainResult.history``), or a
            mapping ``{label: path_or_records}`` to overlay several runs.
        title: the figure's title.

    Returns:
        The matplotlib figure (two panels: loss, accuracy). Dotted vertical lines mark
        the epochs where the learning rate dropped.
    """
    import matplotlib.pyplot as plt

    runs = log if isinstance(log, Mapping) else {"": log}
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, run) in enumerate(runs.items()):
        records = read_log(run) if isinstance(run, (str, os.PathLike)) else list(run)
        if not records:
            raise ValueError(f"no epochs to plot in run {label or 0!r}")
        epochs = [r["epoch"] for r in records]
        colour = colours[i % len(colours)]
        prefix = f"{label} " if label else ""
        for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
            scale = 100 if key == "acc" else 1
            ax.plot(epochs, [scale * r[f"train_{key}"] for r in records], "--", color=colour,
                    label=f"{prefix}train")  # fmt: skip
            ax.plot(epochs, [scale * r[f"test_{key}"] for r in records], "-", color=colour,
                    label=f"{prefix}test")  # fmt: skip
        if i == 0:
            pairs = zip(records[:-1], records[1:], strict=True)
            drops = [r["epoch"] - 0.5 for a, r in pairs if r["lr"] < a["lr"]]
            for ax in (ax_loss, ax_acc):
                for x in drops:
                    ax.axvline(x, color="grey", linestyle=":", linewidth=1)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig
