"""hubconf.py: torch.hub.load(<repository>, "densenet121", weights=...) as for torchvision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import densenet_edu as de
from densenet_edu.architectures import TABLE

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(TABLE))
def test_hub_has_an_entry_point_for_every_imagenet_densenet(name):
    with torch.device("meta"):  # shapes only: instant
        model = torch.hub.load(str(REPO), name, source="local")
    assert model.config == TABLE[name].config


def test_hub_load_builds_the_packages_model():
    model = torch.hub.load(str(REPO), "densenet121", source="local")
    assert isinstance(model, de.DenseNet) and model.config == de.densenet121().config


def test_hub_load_passes_weights_through(tmp_path):
    source = de.densenet121(num_classes=10).eval()
    path = tmp_path / "mine.pth"
    torch.save(source.state_dict(), path)
    model = torch.hub.load(str(REPO), "densenet121", source="local", weights=path, num_classes=10)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), source(x))


def test_hub_load_reports_unknown_weights_like_the_package():
    with pytest.raises(de.WeightsError, match="no weights named 'IMAGENET1K_V2'"):
        torch.hub.load(str(REPO), "densenet121", source="local", weights="IMAGENET1K_V2")
