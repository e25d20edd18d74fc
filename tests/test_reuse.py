"""Feature reuse (the paper's Figure 5): weights set by hand, the statistics, the checkpoint."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch

import densenet_edu as de
from densenet_edu.data import load_dataset
from densenet_edu.reuse import (
    CONCLUSIONS,
    FIGURE5_CHECKPOINT,
    FIGURE5_COMMAND,
    compare_with_untrained,
    feature_reuse,
    plot_feature_reuse,
    reuse_statistics,
    slim_checkpoint,
    steps_per_epoch,
    untrained_copy,
    verdict,
    weight_decay_budget,
)
from densenet_edu.train import (
    TrainConfig,
    build_model,
    config_from_args,
    evaluate,
    load_checkpoint,
    load_model,
    train,
)

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


def test_mapping_input_draws_one_labelled_row_per_network():
    model = _tiny(bottleneck=False)
    rows = {"trained": feature_reuse(model), "untrained": feature_reuse(model)}
    fig = plot_feature_reuse(rows, normalize="column", title="Figure 5")
    panels = [ax for ax in fig.axes if ax.get_title().startswith("dense block")]
    assert len(panels) == 4
    assert [sf._suptitle.get_text() for sf in fig.subfigs] == ["trained", "untrained"]
    assert fig._suptitle.get_text() == "Figure 5"


def test_row_labels_do_not_overlap_any_panel_title():
    matrices = feature_reuse(_tiny(bottleneck=False))
    fig = plot_feature_reuse({"trained, a long label": matrices, "untrained": matrices})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    for subfig in fig.subfigs:
        label = subfig._suptitle.get_window_extent(renderer)
        assert not any(label.overlaps(t) for t in titles)


def test_the_figure_title_sits_above_every_panel_title():
    fig = plot_feature_reuse(feature_reuse(_tiny(bottleneck=False)), title="a long title " * 3)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    suptitle = fig._suptitle.get_window_extent(renderer)
    for ax in fig.axes:
        if ax.get_title():
            assert suptitle.y0 >= ax.title.get_window_extent(renderer).y1 - 1


# --- the statistics behind the paper's four conclusions ----------------------------------------


def _block(columns: list[list[float]]) -> np.ndarray:
    """A feature-reuse matrix from its columns (column j lists sources 0..j)."""
    size = len(columns)
    m = np.full((size, size), np.nan)
    for j, column in enumerate(columns):
        m[: len(column), j] = column
    return m


EVEN = _block([[1.0], [1.0, 1.0], [1.0, 1.0, 1.0]])


def test_statistics_of_evenly_spread_weights():
    stats = reuse_statistics([EVEN, EVEN])
    assert stats == {
        "layer_spread": 1.0,
        "transition_spread": 1.0,
        "input_least": 1.0,  # all equal: argmin picks source 0
        "input_ratio": 1.0,
        "classifier_ratio": 1.0,
    }


def test_statistics_count_sources_near_the_column_maximum_and_source_0_in_later_blocks():
    # block 1: layer 2 reads (1, 4): 1 of 2 sources >= 2; transition reads (4, 1, 1): 1 of 3
    first = _block([[1.0], [1.0, 4.0], [4.0, 1.0, 1.0]])
    # block 2: layer 2 reads (1, 3): source 0 smallest, ratio 1/3; classifier (1, 2, 6)
    second = _block([[1.0], [1.0, 3.0], [1.0, 2.0, 6.0]])
    stats = reuse_statistics([first, second])
    assert stats["layer_spread"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert stats["transition_spread"] == pytest.approx(1 / 3)
    assert stats["input_least"] == 1.0
    assert stats["input_ratio"] == pytest.approx(1 / 3)
    assert stats["classifier_ratio"] == pytest.approx((2 + 6) / 2 / 1)  # later half: 2, 6


def test_statistics_need_two_blocks():
    with pytest.raises(ValueError, match="2 or more"):
        reuse_statistics([EVEN])


@pytest.mark.parametrize(
    ("trained", "direction", "expected"),
    [
        (1.25, "higher", "agrees"),
        (1.15, "higher", "same as untrained"),  # beyond the range, but by less than the margin
        (1.00, "higher", "same as untrained"),
        (0.75, "higher", "opposite"),
        (0.75, "lower", "agrees"),
        (1.25, "lower", "opposite"),
    ],
)
def test_a_verdict_needs_the_margin_beyond_every_untrained_value(trained, direction, expected):
    assert verdict(trained, [0.95, 1.0, 1.05], direction, margin=0.1) == expected


def test_verdict_rejects_an_unknown_direction():
    with pytest.raises(ValueError, match="direction"):
        verdict(1.0, [1.0], "up", margin=0.1)


def test_every_conclusion_names_a_statistic_and_a_direction():
    keys = set(reuse_statistics([EVEN, EVEN]))
    assert {c.statistic for c in CONCLUSIONS} == keys
    assert {c.number for c in CONCLUSIONS} == {1, 2, 3, 4}
    assert {c.direction for c in CONCLUSIONS} <= {"higher", "lower"}


def test_untrained_copy_has_the_architecture_and_fresh_reproducible_weights():
    model = _tiny(bottleneck=False)
    state = torch.random.get_rng_state()
    a, b, c = (untrained_copy(model, s) for s in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert a.config == model.config
    w = [m.features.denseblock1.denselayer1.conv1.weight for m in (a, b, c)]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])


def test_an_untrained_network_never_agrees_beyond_its_own_baseline():
    model = untrained_copy(_tiny(bottleneck=False), seed=3)
    rows = compare_with_untrained(model, seeds=[3, 4, 5], margin=0.0)
    assert [r["statistic"] for r in rows] == [c.statistic for c in CONCLUSIONS]
    for r in rows:
        assert r["untrained_min"] <= r["trained"] <= r["untrained_max"]
        assert r["verdict"] == "same as untrained"


def test_the_papers_weight_decay_budget_over_300_cifar_epochs():
    # 50,000 images / 64 = 782 steps; 150 epochs at 0.1, 75 at 0.01, 75 at 0.001.
    expected = 1e-4 * 782 * (150 * 0.1 + 75 * 0.01 + 75 * 0.001)
    assert steps_per_epoch(50_000, 64) == 782
    assert weight_decay_budget(300, 782) == pytest.approx(expected)


def test_weight_decay_budget_follows_the_training_schedule_for_odd_epoch_counts():
    # 30 epochs: drops in the first epochs at or past 15 and 22.5 (0-based): 15 and 23.
    expected = 0.034 * 23 * (15 * 0.1 + 8 * 0.01 + 7 * 0.001)
    assert weight_decay_budget(30, 23, weight_decay=0.034) == pytest.approx(expected)
    assert weight_decay_budget(4, 10, milestones=()) == pytest.approx(1e-4 * 4 * 10 * 0.1)


# --- the shipped checkpoint -------------------------------------------------------------------


def test_slim_checkpoint_keeps_the_weights_in_float16_and_loads_with_load_model(tmp_path):
    config = TrainConfig(
        dataset="digits", train_limit=64, test_limit=32, image_size=8, depth=7,
        growth_rate=2, bottleneck=False, compression=1.0, epochs=1, batch_size=32,
        out_dir=str(tmp_path / "run"), progress=False, verbose=False,
    )  # fmt: skip
    result = train(config)
    slim = slim_checkpoint(result.checkpoint_path, tmp_path / "slim.pt")
    assert slim.stat().st_size < result.checkpoint_path.stat().st_size
    state = torch.load(slim, weights_only=True)
    assert "optimizer" not in state
    assert state["model"]["features.conv0.weight"].dtype == torch.float16
    model = load_model(slim)
    for name, tensor in result.model.state_dict().items():
        loaded = model.state_dict()[name]
        assert loaded.dtype == tensor.dtype
        torch.testing.assert_close(loaded, tensor, rtol=1e-3, atol=1e-4)


def test_the_shipped_figure5_checkpoint_is_small_and_holds_the_documented_run():
    assert FIGURE5_CHECKPOINT.is_file(), FIGURE5_CHECKPOINT
    assert FIGURE5_CHECKPOINT.stat().st_size < 2_000_000
    train_command = FIGURE5_COMMAND.splitlines()[0].split()
    assert train_command[:3] == ["python", "-m", "densenet_edu.train"]
    config = config_from_args(train_command[3:])
    assert (config.depth, config.growth_rate, config.bottleneck) == (28, 12, False)
    # load_checkpoint raises unless the architecture and the whole recipe match.
    state = load_checkpoint(FIGURE5_CHECKPOINT, build_model(config, 10, 1), config)
    assert state["epoch"] == config.epochs == len(state["history"])
    model = load_model(FIGURE5_CHECKPOINT)
    assert model.config["block_config"] == (8, 8, 8) and model.config["compression"] == 1.0


def test_the_shipped_checkpoint_scores_what_its_log_says_after_float16_storage():
    model = load_model(FIGURE5_CHECKPOINT)
    logged = load_checkpoint(FIGURE5_CHECKPOINT)["history"][-1]["test_acc"]
    data = load_dataset("digits", augment=False, image_size=8)
    _, acc = evaluate(model, data.test)
    assert acc == pytest.approx(logged, abs=0.01)
