"""The paper's Figure 2 for any DenseNet: stages left to right, heights in channels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from densenet_edu.viz.common import figure_axes
from densenet_edu.viz.stages import Stage, network_stages

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from densenet_edu.model import DenseNet

__all__ = ["draw_densenet"]

COLORS = {
    "stem": "#c6dbef",
    "block": "#fdd0a2",
    "transition": "#c7e9c0",
    "head": "#dadaeb",
    "classifier": "#dadaeb",
}
_WIDTHS = {"stem": 1.6, "transition": 1.45, "head": 1.5, "classifier": 1.35}  # not blocks
GAP, LEAD = 0.4, 1.0  # arrow length; room for the input's label
FONTSIZE = 8


def draw_densenet(model: DenseNet, ax: Axes | None = None, input_size: int | None = None) -> Axes:
    """Draw `model` as the paper's Figure 2 does, with every number read from its modules.

    Stem, dense blocks, transitions, pooling and classifier from left to right. The
    height of a dense block or transition at its left and right edge is proportional to
    its input and output channels, so a block widens by k per layer (one thin line per
    layer inside it) and a transition narrows by its compression. Below each stage: what
    it computes, its channels and its feature-map size for an `input_size` x `input_size`
    image (see `network_stages`). Stage patches carry the stage's kind as gid
    (``"stem"``, ``"block"``, ``"transition"``, ``"head"``, ``"classifier"``).
    """
    stages = network_stages(model, input_size)
    scale = _Scale(
        max_channels=max(max(s.in_channels, s.out_channels) for s in stages[:-1]),
        max_layers=max((s.num_layers for s in stages if s.kind == "block"), default=1),
    )
    total = LEAD + sum(scale.width(s) + GAP for s in stages) + GAP + 0.8
    ax = figure_axes(ax, (0.72 * total, 4.0))
    top = scale.height(scale.max_channels) / 2
    in_size = stages[0].in_size
    ax.text(
        LEAD - 0.1,
        0,
        f"input\n{model.in_channels}×{in_size}×{in_size}",
        ha="right",
        va="center",
        fontsize=FONTSIZE,
    )
    x = LEAD
    for stage in stages:
        _arrow(ax, x)
        x += GAP
        _draw_stage(ax, stage, x, scale, top)
        x += scale.width(stage)
    _arrow(ax, x)
    ax.text(
        x + GAP + 0.05,
        0,
        f"{stages[-1].out_channels}\nscores",
        ha="left",
        va="center",
        fontsize=FONTSIZE,
    )
    ax.set_xlim(0, total)
    ax.set_ylim(-top - 1.6, top + 0.5)
    ax.axis("off")
    return ax


@dataclass(frozen=True)
class _Scale:
    """Stage sizes in axes units: heights follow channels, block widths follow layers."""

    max_channels: int
    max_layers: int

    def height(self, channels: int) -> float:
        return 0.35 + 2.4 * channels / self.max_channels

    def width(self, stage: Stage) -> float:
        if stage.kind == "block":
            return 1.3 + 1.4 * stage.num_layers / self.max_layers
        return _WIDTHS[stage.kind]

    def edges(self, stage: Stage) -> tuple[float, float]:
        """Heights of the stage's left and right edges (the head's are fixed)."""
        if stage.kind in ("block", "transition"):
            return self.height(stage.in_channels), self.height(stage.out_channels)
        if stage.kind == "stem":
            return (self.height(stage.out_channels),) * 2
        return 0.8, 0.8


def _arrow(ax: Axes, x: float) -> None:
    """An arrow from ``x`` to the next stage, on the centre line."""
    ax.annotate(
        "",
        xy=(x + GAP, 0),
        xytext=(x, 0),
        arrowprops=dict(arrowstyle="-|>", color="0.3", lw=1.2),
    )


def _draw_stage(ax: Axes, stage: Stage, x: float, scale: _Scale, top: float) -> None:
    """One stage at ``x``: its trapezoid, its name above, its numbers below (a block's layer
    count and k inside it, with a thin line between dense layers)."""
    from matplotlib.patches import Polygon

    w = scale.width(stage)
    left, right = scale.edges(stage)
    patch = Polygon(
        [(x, -left / 2), (x + w, -right / 2), (x + w, right / 2), (x, left / 2)],
        closed=True,
        fc=COLORS[stage.kind],
        ec="0.25",
        lw=1,
    )
    patch.set_gid(stage.kind)
    ax.add_patch(patch)
    center = x + w / 2
    ax.text(
        center,
        top + 0.12,
        stage.name,
        ha="center",
        va="bottom",
        fontsize=FONTSIZE + 0.5,
        weight="bold",
    )
    if stage.kind == "block":
        for i in range(1, stage.num_layers):  # one thin line between dense layers
            xi = x + w * i / stage.num_layers
            hi = left + (right - left) * i / stage.num_layers
            ax.plot([xi, xi], [-hi / 2, hi / 2], color="0.55", lw=0.5)
        ax.text(
            center,
            0,
            "\n".join(stage.details),
            ha="center",
            va="center",
            fontsize=FONTSIZE,
            bbox=dict(boxstyle="round,pad=0.15", fc=COLORS["block"], ec="none"),
        )
    below = _numbers_below(stage)
    ax.text(center, -top - 0.12, "\n".join(below), ha="center", va="top", fontsize=FONTSIZE)


def _numbers_below(stage: Stage) -> list[str]:
    """What a stage computes (blocks say it inside), its channels and its map size."""
    below = [] if stage.kind == "block" else list(stage.details)
    below.append(
        f"{stage.in_channels} → {stage.out_channels} ch"
        if stage.in_channels != stage.out_channels
        else f"{stage.out_channels} ch"
    )
    if stage.kind != "classifier":
        below.append(
            f"{stage.in_size}×{stage.in_size} → {stage.out_size}×{stage.out_size}"
            if stage.in_size != stage.out_size
            else f"{stage.out_size}×{stage.out_size}"
        )
    return below
