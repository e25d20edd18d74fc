"""The explorable figures show the package's numbers, and their HTML needs no CDN in the book.

Expected values are computed here independently: by the paper's formulas (k0 + k(l - 1),
floor(theta m)) or by building the modules and counting them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import densenet_edu as de

pytest.importorskip("plotly")

from plotly.offline import get_plotlyjs_version  # noqa: E402

from densenet_edu import explore  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "_ext"))
import plotly_assets  # noqa: E402


@pytest.fixture(scope="module")
def growth():
    return explore.channel_growth_explorer()


@pytest.fixture(scope="module")
def bottleneck():
    return explore.bottleneck_cost_explorer()


@pytest.fixture(scope="module")
def compression():
    return explore.compression_explorer(thetas=(0.25, 0.5, 1.0))


def _meta(factory, *args, **kwargs):
    with torch.device("meta"):
        return factory(*args, **kwargs)


# --- (a) channel growth -------------------------------------------------------------------


@pytest.mark.parametrize(
    "k0, k, num_layers", [(64, 32, 6), (24, 12, 16), (256, 48, 24), (16, 6, 1)]
)
def test_channel_growth_bars_add_up_to_k0_plus_k_times_earlier_layers(growth, k0, k, num_layers):
    state = explore.grid_state(growth, k0, k, num_layers)
    from_input, from_layers, output = state["data"]["y"]
    assert from_input == [k0] * num_layers
    widths = [a + b for a, b in zip(from_input, from_layers, strict=True)]
    assert widths == [k0 + k * (ell - 1) for ell in range(1, num_layers + 1)]
    assert output == [k0 + k * num_layers]


@pytest.mark.parametrize("k0, k, num_layers", [(64, 32, 6), (128, 12, 9), (24, 48, 24)])
def test_channel_growth_title_counts_the_parameters_of_that_dense_block(growth, k0, k, num_layers):
    state = explore.grid_state(growth, k0, k, num_layers)
    title = state["layout"]["title.text"]
    params = de.count_parameters(_meta(de.DenseBlock, num_layers, k0, k))
    assert f"has {params:,} parameters" in title
    assert state["data"]["customdata"][2] == [[num_layers, params]]  # the output bar's hover
    assert f"outputs {k0 + k * num_layers} channels" in title


def test_channel_growth_opens_on_densenet121_block_1(growth):
    assert [s.label for s in growth.layout.sliders[0].steps][
        growth.layout.sliders[0].active
    ] == "64"
    assert list(growth.data[2].y) == [64 + 32 * 6]
    assert [s.currentvalue.prefix for s in growth.layout.sliders] == [
        "k₀ (block input) = ",
        "k (growth rate) = ",
        "L (layers in the block) = ",
    ]


def test_grid_state_rejects_a_value_the_slider_does_not_have(growth):
    with pytest.raises(ValueError, match="not a position"):
        explore.grid_state(growth, 65, 32, 6)
    with pytest.raises(ValueError, match="3 sliders"):
        explore.grid_state(growth, 64, 32)


# --- (b) bottleneck ----------------------------------------------------------------------


@pytest.mark.parametrize("k, k0", [(32, 64), (12, 16), (48, 512)])
def test_bottleneck_curves_are_the_parameters_of_each_dense_layer(bottleneck, k, k0):
    plain, with_b, block_plain, block_b = explore.grid_state(bottleneck, k, k0)["data"]["y"]
    for ell in (1, 5, 32):
        m = k0 + k * (ell - 1)
        assert plain[ell - 1] == de.count_parameters(de.DenseLayer(m, k, bottleneck=False))
        assert with_b[ell - 1] == de.count_parameters(de.DenseLayer(m, k, bottleneck=True))
    for num_layers in (3, 32):
        for total, flag in ((block_plain, False), (block_b, True)):
            block = _meta(de.DenseBlock, num_layers, k0, k, bottleneck=flag)
            assert total[num_layers - 1] == de.count_parameters(block)


@pytest.mark.parametrize("k, k0", [(32, 64), (12, 16), (24, 128)])
def test_bottleneck_break_even_is_where_m_exceeds_7_2k_plus_1_6(bottleneck, k, k0):
    # Parameters: bottleneck 2m + 4km + 8k + 36k^2, plain 2m + 9km (chapter 4); the
    # bottleneck is smaller exactly when m > 7.2k + 1.6.
    first = next(ell for ell in range(1, 33) if k0 + k * (ell - 1) > 7.2 * k + 1.6)
    state = explore.grid_state(bottleneck, k, k0)
    if first == 1:
        assert "from layer 1 on" in state["layout"]["title.text"]
    else:
        assert f"from layer {first} on" in state["layout"]["title.text"]
    assert state["layout"]["shapes[1].x0"] == first - 0.5


def test_bottleneck_break_even_line_follows_the_last_layer_when_the_plain_layer_always_wins():
    # k = 48: the bottleneck pays off only for m > 7.2 * 48 + 1.6 = 347.2 input channels;
    # a block of 4 layers from k0 = 16 reads at most 16 + 3 * 48 = 160.
    fig = explore.bottleneck_cost_explorer(growth_rates=(48,), k0_values=(16,), max_layers=4,
                                           initial=(48, 16))  # fmt: skip
    state = explore.grid_state(fig, 48, 16)
    assert "the plain layer is smaller in all 4 layers" in state["layout"]["title.text"]
    assert state["layout"]["shapes[1].x0"] == 4.5
    plain, with_b = state["data"]["y"][:2]
    assert all(p < b for p, b in zip(plain, with_b, strict=True))


# --- (c) compression ---------------------------------------------------------------------


def _densenet121_widths_by_hand() -> list[int]:
    widths, k0 = [], 64
    for num_layers in (6, 12, 24, 16):
        widths += [k0 + 32 * i for i in range(num_layers)]
        k0 = (k0 + 32 * num_layers) // 2
    return widths


def test_compression_marks_densenet121_at_theta_one_half_with_its_real_widths(compression):
    reference = compression.data[1]
    assert "DenseNet-121" in reference.name
    assert list(reference.y) == _densenet121_widths_by_hand()
    assert list(reference.y) == explore.layer_input_widths(_meta(de.densenet121))
    star = compression.data[5]
    assert list(star.x) == [0.5, 0.5] and list(star.y) == [100.0, 100.0]


def test_compression_slider_steps_carry_each_thetas_widths_and_costs(compression):
    steps = {step.label: step.args for step in compression.layout.sliders[0].steps}
    assert list(steps) == ["0.25", "0.50", "1.00"]
    data, layout, traces = steps["0.25"]
    assert list(traces) == [0, 4]
    # theta = 0.25: 256 -> 64, 64 + 12 * 32 = 448 -> 112, 112 + 24 * 32 = 880 -> 220.
    assert "keep 64, 112, 220 maps" in layout["title.text"]
    assert data["y"][0][:7] == [64, 96, 128, 160, 192, 224, 64]
    model = _meta(de.DenseNet, compression=0.25)
    reference = _meta(de.densenet121)
    relative = 100 * de.count_parameters(model) / de.count_parameters(reference)
    assert data["y"][1][0] == pytest.approx(relative)
    assert steps["0.50"][0]["y"][0] == _densenet121_widths_by_hand()
    assert steps["0.50"][0]["y"][1] == pytest.approx([100.0, 100.0])


def test_compression_opens_on_the_initial_theta(compression):
    assert compression.layout.sliders[0].active == 1
    assert list(compression.data[0].y) == _densenet121_widths_by_hand()


# --- (d) feature reuse -------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return de.densenet_cifar(16, 6, bottleneck=False, compression=1.0, num_classes=10)


def test_feature_reuse_hover_values_are_feature_reuse_of_the_model(small_model):
    fig = explore.feature_reuse_explorer(small_model)
    expected = de.feature_reuse(small_model)
    assert len(fig.data) == len(expected)
    for trace, matrix in zip(fig.data, expected, strict=True):
        shown = np.array(trace.customdata, dtype=float)
        np.testing.assert_allclose(shown, matrix, equal_nan=True)
        assert "source" in trace.hovertemplate and "target" in trace.hovertemplate
        assert "weight" in trace.hovertemplate
        # the default colours: each target column divided by its largest entry
        np.testing.assert_allclose(np.nanmax(np.array(trace.z, dtype=float), axis=0), 1.0)
    assert list(fig.data[-1].x)[-1] == "C" and list(fig.data[0].x)[-1] == "T1"


def test_feature_reuse_takes_matrices_and_offers_the_untrained_model(small_model):
    matrices = de.feature_reuse(small_model)
    untrained = [m * 2 for m in matrices]
    fig = explore.feature_reuse_explorer(matrices, untrained=untrained)
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label.split(",")[0] for b in buttons] == ["trained"] * 3 + ["untrained"] * 3
    raw_untrained = next(b for b in buttons if b.label == "untrained, raw mean |weight|")
    z = np.array(raw_untrained.args[0]["z"][0], dtype=float)
    np.testing.assert_allclose(z, untrained[0], equal_nan=True)


# --- HTML ----------------------------------------------------------------------------------


def test_html_of_a_several_slider_figure_carries_the_grid_listener(growth):
    html = explore.to_html(growth)
    assert "plotly_sliderchange" in html and "densenet_edu_grid" in html
    assert 'class="plotly-graph-div"' in html


def test_html_of_a_one_slider_figure_needs_no_javascript_of_ours(compression):
    assert "plotly_sliderchange" not in explore.to_html(compression)


def test_html_in_the_book_loads_nothing(compression, monkeypatch):
    monkeypatch.setenv(explore.PAGE_HAS_PLOTLY_ENV, "1")  # what _ext/plotly_assets.py sets
    html = explore.to_html(compression)
    assert "http" not in html.replace("http://www.w3.org", "")  # no URL at all
    assert 'class="plotly-graph-div"' in html and "Plotly.newPlot" in html


def test_html_in_jupyter_loads_the_bundled_plotly_version_then_draws(compression, monkeypatch):
    monkeypatch.delenv(explore.PAGE_HAS_PLOTLY_ENV, raising=False)
    html = explore.to_html(compression)
    version = get_plotlyjs_version()
    assert f"script.src = 'https://cdn.plot.ly/plotly-{version}.min.js'" in html
    assert "addEventListener('load', draw)" in html and "Plotly.newPlot" in html
    assert (
        explore.to_html(compression, plotly_src="file:///x/plotly.min.js").count(
            "file:///x/plotly.min.js"
        )
        == 2
    )


def test_the_book_extension_sets_the_variable_show_reads():
    assert plotly_assets.ENV_VAR == explore.PAGE_HAS_PLOTLY_ENV


def test_show_displays_html_with_a_text_fallback(compression, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    explore.show(compression)
    bundle = shown[0]._repr_mimebundle_()
    assert set(bundle) == {"text/html", "text/plain"}
    assert 'class="plotly-graph-div"' in bundle["text/html"]
    assert bundle["text/plain"].startswith("<figure: θ = 0.50")
