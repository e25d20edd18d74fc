"""Weight compatibility with torchvision: same keys, shapes, parameter counts and numerics."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision

import densenet_edu as de
from densenet_edu.architectures import TABLE

NAMES = ["densenet121", "densenet161", "densenet169", "densenet201"]


def pair(name: str, device: torch.device | str = "cpu", **kwargs):
    """A torchvision model and ours with torchvision's (random) weights copied in."""
    theirs = getattr(torchvision.models, name)(**kwargs).to(device)
    ours = getattr(de, name)(**kwargs).to(device)
    de.load_torchvision_weights(ours, theirs)
    return theirs, ours


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys_and_shapes_equal_torchvisions(name):
    with torch.device("meta"):
        theirs = getattr(torchvision.models, name)().state_dict()
        ours = getattr(de, name)().state_dict()
    assert list(ours) == list(theirs)  # same keys, same order
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_equals_torchvisions_published_figure(name):
    with torch.device("meta"):
        model = getattr(de, name)()
    # The table's figure is torchvision's (tests/test_weights.py compares it with the enum).
    assert de.count_parameters(model) == TABLE[name].weights["IMAGENET1K_V1"].params


def test_densenet121_eval_outputs_equal_torchvision_at_224(device):
    theirs, ours = pair("densenet121", device)
    x = torch.randn(2, 3, 224, 224, device=device)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_eval_outputs_equal_torchvision(name, device):
    theirs, ours = pair(name, device)
    x = torch.randn(2, 3, 64, 64, device=device)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-5, atol=1e-5)


def test_train_mode_outputs_gradients_and_running_stats_equal_torchvision(
    device, assert_same_training_step
):
    theirs, ours = pair("densenet121", device)
    x = torch.randn(4, 3, 64, 64, device=device)
    target = torch.randint(0, 1000, (4,), device=device)
    assert_same_training_step(theirs, ours, x, target)


def to_legacy(state_dict: dict) -> dict:
    """The 2017 file layout: `norm.1` instead of `norm1`, no num_batches_tracked.

    Written independently of the package's converter, from the description of
    torchvision's published files.
    """
    legacy = {}
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        key = re.sub(r"(denselayer\d+\.)(norm|relu|conv)([12])\.", r"\1\2.\3.", key)
        legacy[key] = value
    return legacy


def test_legacy_keys_look_like_torchvisions_published_files():
    theirs = torchvision.models.densenet121()
    legacy = to_legacy(theirs.state_dict())
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert "features.denseblock4.denselayer16.conv.2.weight" in legacy
    assert "features.norm5.weight" in legacy  # outside dense layers nothing changes


def test_legacy_checkpoint_loads_and_gives_torchvisions_outputs():
    theirs = torchvision.models.densenet121().eval()
    ours = de.densenet121().eval()
    de.load_torchvision_weights(ours, to_legacy(theirs.state_dict()))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_legacy_file_loads_as_torchvisions_own_loader_loads_it(tmp_path, monkeypatch):
    # torchvision's builder renames the legacy keys itself (models.densenet._load_state_dict);
    # feed it the same file instead of a download, and both models must agree exactly.
    source = torchvision.models.densenet121()
    release = tmp_path / "densenet121-legacy.pth"
    torch.save(to_legacy(source.state_dict()), release)
    monkeypatch.setattr(
        torchvision.models._api,
        "load_state_dict_from_url",
        lambda url, *args, **kwargs: torch.load(release, weights_only=True),
    )
    weights = torchvision.models.DenseNet121_Weights.IMAGENET1K_V1
    theirs = torchvision.models.densenet121(weights=weights, progress=False).eval()
    ours = de.densenet121(weights=release).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=0, atol=0, msg=key)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)


def test_dataparallel_prefix_is_stripped():
    theirs = torchvision.models.densenet121().eval()
    wrapped = {f"module.{k}": v for k, v in theirs.state_dict().items()}
    ours = de.load_torchvision_weights(de.densenet121(), wrapped).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_mismatch_lists_missing_unexpected_and_wrong_shape_keys_together():
    state = torchvision.models.densenet121(num_classes=10).state_dict()
    del state["features.norm5.weight"]
    state["features.extra.weight"] = torch.zeros(1)
    with pytest.raises(de.WeightsError) as info:
        de.load_torchvision_weights(de.densenet121(), state)
    message = str(info.value)
    assert "missing from the checkpoint (1):\n    features.norm5.weight" in message
    assert "unexpected in the checkpoint (1):\n    features.extra.weight" in message
    assert "classifier.weight: checkpoint (10, 1024), model (1000, 1024)" in message


def test_loading_into_the_wrong_architecture_fails_readably():
    state = torchvision.models.densenet169().state_dict()
    with pytest.raises(de.WeightsError, match="do not fit this model"):
        de.load_torchvision_weights(de.densenet121(), state)


def test_load_rejects_a_source_that_is_not_weights():
    with pytest.raises(TypeError, match="torchvision model or a state_dict"):
        de.load_torchvision_weights(de.densenet121(), "densenet121.pth")
