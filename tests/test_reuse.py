"""Feature reuse (the paper's Figure 5) on models whose weights are set by hand."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch

import densenet_edu as de
from densenet_edu.reuse import feature_reuse, plot_feature_reuse

matplotlib.use("Agg")


def _tiny(bottleneck: bool) -> de.DenseNet:
    # Two blocks of 2 layers, k = 2, stem 3 channels, no compression:
    # block 1 sources: input 3 ch, layer 1 2 ch, layer 2 2 ch -> 7 channels;
    # transition 7 -> 7; block 2 sources: 7, 2, 2 -> 11 channels -> classifier.
    return de.DenseNet(
        growth_rate=2,
        block_config=(2, 2),
        num_init_features=3,
        compression=1.0,
        bottleneck=bottleneck,
        num_classes=4,
        stem="cifar",
    )


def _fill_by_source(weight: torch.Tensor, slices: list[tuple[int, int]], values: list[float]):
    """Source slice i gets entries alternating +v_i / -v_i, so its mean |w| is exactly v_i."""
    with torch.no_grad():
        for (lo, hi), v in zip(slices, values, strict=True):
            part = weight[:, lo:hi]
            signs = torch.ones(part.numel())
            signs[1::2] = -1
            part.copy_(v * signs.reshape(part.shape))


SLICES_BLOCK1 = [(0, 3), (3, 5), (5, 7)]
SLICES_BLOCK2 = [(0, 7), (7, 9), (9, 11)]


@pytest.mark.parametrize("bottleneck", [True, False])
def test_each_entry_is_the_mean_absolute_weight_of_its_source_slice(bottleneck):
    model = _tiny(bottleneck)
    f = model.features
    _fill_by_source(f.denseblock1.denselayer1.conv1.weight, SLICES_BLOCK1[:1], [1.0])
    _fill_by_source(f.denseblock1.denselayer2.conv1.weight, SLICES_BLOCK1[:2], [2.0, 3.0])
    _fill_by_source(f.transition1.conv.weight, SLICES_BLOCK1, [4.0, 5.0, 6.0])
    _fill_by_source(f.denseblock2.denselayer1.conv1.weight, SLICES_BLOCK2[:1], [7.0])
    _fill_by_source(f.denseblock2.denselayer2.conv1.weight, SLICES_BLOCK2[:2], [8.0, 9.0])
    _fill_by_source(model.classifier.weight, SLICES_BLOCK2, [10.0, 11.0, 12.0])

    block1, block2 = feature_reuse(model)

    nan = math.nan
    # rows: source 0 (block input), 1, 2; columns: layer 1, layer 2, transition / classifier
    np.testing.assert_array_equal(block1, [[1, 2, 4], [nan, 3, 5], [nan, nan, 6]])
    np.testing.assert_array_equal(block2, [[7, 8, 10], [nan, 9, 11], [nan, nan, 12]])


def test_uneven_weights_within_a_slice_are_averaged_in_absolute_value():
    model = _tiny(bottleneck=False)
    w = model.features.transition1.conv.weight  # (7 out, 7 in, 1, 1)
    with torch.no_grad():
        w.zero_()
        w[0, 0] = -3.0  # one entry of the 7 x 3 entries reading the block input
        w[1, 4] = 0.5  # one entry of the 7 x 2 entries reading layer 1
    (block1, _) = feature_reuse(model)
    assert block1[0, 2] == pytest.approx(3.0 / 21)
    assert block1[1, 2] == pytest.approx(0.5 / 14)
    assert block1[2, 2] == 0.0


def test_one_square_matrix_per_block_with_nan_below_the_diagonal():
    model = de.densenet_cifar(40, 12, bottleneck=False, compression=1.0)
    matrices = feature_reuse(model)
    assert [m.shape for m in matrices] == [(13, 13)] * 3
    for m in matrices:
        rows, cols = np.indices(m.shape)
        assert np.isnan(m[rows > cols]).all()
        assert (m[rows <= cols] > 0).all()


def test_works_on_imagenet_densenets_with_four_blocks():
    with torch.device("meta"):
        model = de.densenet121()
    model = model.to_empty(device="cpu")
    assert [m.shape[0] for m in feature_reuse(model)] == [7, 13, 25, 17]


def test_rejects_models_that_are_not_densenets():
    with pytest.raises(TypeError, match="DenseNet"):
        feature_reuse(torch.nn.Linear(3, 3))


def test_plot_has_one_labelled_panel_per_block():
    fig = plot_feature_reuse(feature_reuse(_tiny(bottleneck=True)))
    panels = [ax for ax in fig.axes if ax.get_title().startswith("dense block")]
    assert len(panels) == 2
    assert panels[0].get_xlabel() == "target layer ℓ"
    assert panels[0].get_ylabel() == "source layer s"
    assert [t.get_text() for t in panels[1].get_xticklabels()][-1] == "C"


def test_column_normalisation_scales_every_target_to_a_maximum_of_one():
    fig = plot_feature_reuse(feature_reuse(_tiny(bottleneck=False)), normalize="column")
    image = fig.axes[0].get_images()[0].get_array()
    assert np.allclose(np.ma.max(image, axis=0), 1.0)


def test_unknown_normalisation_is_rejected():
    with pytest.raises(ValueError, match="normalize"):
        plot_feature_reuse(feature_reuse(_tiny(bottleneck=False)), normalize="row")
