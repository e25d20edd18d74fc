"""weights=: hub-cache downloads with a hash check, local files, clear offline errors."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch
import torchvision

import densenet_edu as de
from densenet_edu import weights as weights_module


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub cache, so nothing from a real download is reused."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.fixture
def published_file(tmp_path):
    """A torchvision-style release file: legacy keys, name carrying its SHA-256 prefix."""
    reference = torchvision.models.densenet121().eval()
    legacy = {
        k.replace("norm1.", "norm.1.").replace("norm2.", "norm.2.")
        .replace("conv1.", "conv.1.").replace("conv2.", "conv.2.")
        if "denselayer" in k else k: v
        for k, v in reference.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }  # fmt: skip
    staging = tmp_path / "staging.pth"
    torch.save(legacy, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()[:8]
    release = tmp_path / "server" / f"densenet121-{digest}.pth"
    release.parent.mkdir()
    shutil.move(staging, release)
    return reference, release


def test_imagenet_weights_download_verify_and_load(hub_dir, published_file, monkeypatch):
    reference, release = published_file
    monkeypatch.setitem(weights_module.WEIGHTS_URLS, "densenet121", release.as_uri())
    model = de.densenet121(weights="IMAGENET1K_V1", progress=False).eval()
    assert (hub_dir / "checkpoints" / release.name).is_file()  # the standard hub cache
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_download_with_a_wrong_hash_is_rejected(hub_dir, published_file, monkeypatch):
    _, release = published_file
    tampered = release.with_name("densenet121-00000000.pth")
    release.rename(tampered)
    monkeypatch.setitem(weights_module.WEIGHTS_URLS, "densenet121", tampered.as_uri())
    with pytest.raises(de.WeightsError, match="invalid hash value|hash"):
        de.densenet121(weights="IMAGENET1K_V1", progress=False)


def test_offline_download_says_what_failed_and_how_to_load_a_file(hub_dir, monkeypatch):
    # Port 9 (discard) on loopback: the connection is refused at once, like being offline.
    url = "http://127.0.0.1:9/models/densenet121-a639ec97.pth"
    monkeypatch.setitem(weights_module.WEIGHTS_URLS, "densenet121", url)
    with pytest.raises(de.WeightsError) as info:
        de.densenet121(weights="IMAGENET1K_V1", progress=False)
    message = str(info.value)
    assert "could not get the pretrained weights from http://127.0.0.1:9" in message
    assert "densenet121(weights='/path/to/densenet121-a639ec97.pth')" in message


def test_weights_from_a_local_path(published_file):
    reference, release = published_file
    model = de.densenet121(weights=release).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_weights_path_as_string_works_too(published_file):
    _, release = published_file
    de.densenet121(weights=str(release))


def test_missing_weights_file_is_named_in_the_error(tmp_path):
    with pytest.raises(de.WeightsError, match="does not exist"):
        de.densenet121(weights=tmp_path / "nope.pth")


def test_corrupt_weights_file_is_reported(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(de.WeightsError, match="could not read weights"):
        de.densenet121(weights=bad)


def test_loading_refuses_pickled_code(tmp_path):
    # weights_only=True: a file that would execute code on load is refused.
    evil = tmp_path / "evil.pth"
    torch.save({"x": torch.nn.ReLU()}, evil)
    with pytest.raises(de.WeightsError, match="could not read weights"):
        de.densenet121(weights=evil)


def test_densenet264_has_no_published_weights():
    with pytest.raises(de.WeightsError, match="no published ImageNet weights for densenet264"):
        de.densenet264(weights="IMAGENET1K_V1")


def test_torchvision_weight_enum_is_accepted(published_file, hub_dir, monkeypatch):
    _, release = published_file
    monkeypatch.setitem(weights_module.WEIGHTS_URLS, "densenet121", release.as_uri())
    enum = torchvision.models.DenseNet121_Weights.IMAGENET1K_V1
    de.densenet121(weights=enum, progress=False)


def test_urls_are_torchvisions():
    for name, url in weights_module.WEIGHTS_URLS.items():
        enum = getattr(torchvision.models, f"DenseNet{name[8:]}_Weights").IMAGENET1K_V1
        assert enum.url == url
