"""Schematics (densenet_edu.viz): every label and shape comes from the modules drawn."""

from __future__ import annotations

import warnings

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from densenet_edu import DenseBlock, DenseNet, densenet121  # noqa: E402
from densenet_edu.viz import draw_dense_block, draw_densenet, network_stages  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def texts(ax: Axes) -> str:
    return "\n".join(t.get_text() for t in ax.texts) + "\n" + ax.get_title()


def with_gid(ax: Axes, gid: str) -> list:
    return [a for a in [*ax.lines, *ax.patches] if a.get_gid() == gid]


# An unusual block: k0 = 5, k = 7, three plain layers; widths 5, 12, 19; output 26.
def unusual_block() -> DenseBlock:
    return DenseBlock(3, in_channels=5, growth_rate=7, bottleneck=False)


def test_dense_block_boxes_show_each_layers_input_width_read_from_the_module():
    ax = draw_dense_block(unusual_block())
    shown = texts(ax)
    for i, width in enumerate([5, 12, 19], start=1):
        assert f"{width} ch in" in shown, (i, width)
    assert "26 ch out" in shown
    assert "3×3 conv → 7" in shown
    assert len(with_gid(ax, "layer")) == 3


def test_dense_block_draws_every_connection_and_every_input_of_the_output():
    for num_layers in (1, 4, 9):
        ax = draw_dense_block(DenseBlock(num_layers, 6, 3))
        assert len(with_gid(ax, "connection")) == num_layers * (num_layers + 1) // 2
        assert len(with_gid(ax, "output")) == num_layers + 1
        plt.close(ax.figure)


def test_dense_block_shows_the_bottleneck_convolutions_of_a_b_layer():
    shown = texts(draw_dense_block(DenseBlock(2, 10, 3, bn_size=5)))
    assert "1×1 conv → 15" in shown and "3×3 conv → 3" in shown
    assert "10 ch in" in shown and "13 ch in" in shown and "16 ch out" in shown


def test_dense_block_draws_on_a_given_axes_and_returns_it():
    fig, ax = plt.subplots()
    assert draw_dense_block(unusual_block(), ax=ax) is ax
    assert len(fig.axes) == 1


def test_dense_block_refuses_a_block_whose_widths_do_not_add_up():
    block = unusual_block()
    block.denselayer2.in_channels = 11  # as if built for the wrong width
    with pytest.raises(ValueError, match="denselayer2 reads 11 channels, but x_0 .. x_1 hold 12"):
        draw_dense_block(block)


def unusual_net() -> DenseNet:
    return DenseNet(
        growth_rate=5,
        block_config=(2, 3, 4),
        num_init_features=7,
        compression=0.4,
        num_classes=13,
        stem="cifar",
        in_channels=2,
    )


def test_network_stages_follow_the_modules():
    stages = network_stages(unusual_net())
    assert [s.kind for s in stages] == [
        "stem",
        "block",
        "transition",
        "block",
        "transition",
        "block",
        "head",
        "classifier",
    ]
    blocks = [s for s in stages if s.kind == "block"]
    # 7 + 2*5 = 17 -> floor(0.4 * 17) = 6; 6 + 15 = 21 -> 8; 8 + 20 = 28
    assert [(b.in_channels, b.out_channels) for b in blocks] == [(7, 17), (6, 21), (8, 28)]
    assert [b.num_layers for b in blocks] == [2, 3, 4]
    # CIFAR stem: 32x32 input, no downsampling before the first block; each transition halves
    assert [b.in_size for b in blocks] == [32, 16, 8]
    assert stages[-2].out_size == 1
    assert (stages[-1].in_channels, stages[-1].out_channels) == (28, 13)


def test_densenet_schematic_labels_come_from_the_model():
    ax = draw_densenet(unusual_net())
    shown = texts(ax)
    for expected in [
        "input\n2×32×32",
        "2 layers\nk = 5",
        "3 layers\nk = 5",
        "4 layers\nk = 5",
        "7 → 17 ch",
        "17 → 6 ch",
        "θ = 0.4",
        "21 → 8 ch",
        "28 → 13 ch",
        "13\nscores",
        "3×3 conv",
        "16×16 → 8×8",
    ]:
        assert expected in shown, expected
    assert len(with_gid(ax, "block")) == 3
    assert len(with_gid(ax, "transition")) == 2
    assert len(with_gid(ax, "stem")) == len(with_gid(ax, "classifier")) == 1


def test_densenet121_schematic_has_the_papers_table_1_shapes():
    ax = draw_densenet(densenet121())
    shown = texts(ax)
    for expected in [
        "7×7 conv, stride 2",
        "3×3 max pool, stride 2",
        "224×224 → 56×56",
        "6 layers",
        "24 layers",
        "1024 → 512 ch",
        "7×7 → 1×1",
        "1024 → 1000 ch",
    ]:
        assert expected in shown, expected
    assert len(with_gid(ax, "block")) == 4


def test_drawing_emits_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig, (a, b) = plt.subplots(1, 2)
        draw_dense_block(unusual_block(), ax=a)
        draw_densenet(unusual_net(), ax=b)
        fig.canvas.draw()
