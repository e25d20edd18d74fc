"""weights=: hub-cache downloads with a hash check, local files, clear errors for every mistake."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil

import pytest
import torch
import torchvision

import densenet_edu as de
from densenet_edu import model as model_module
from densenet_edu import weights as weights_module
from densenet_edu.architectures import TABLE


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


def serve(monkeypatch, url: str, arch: str = "densenet121") -> None:
    """Make the table's IMAGENET1K_V1 entry of ``arch`` point at ``url``."""
    entry = TABLE[arch]
    weights = dataclasses.replace(entry.weights["IMAGENET1K_V1"], url=url)
    table = {**TABLE, arch: dataclasses.replace(entry, weights={weights.name: weights})}
    monkeypatch.setattr(weights_module, "TABLE", table)


def same_outputs(model, reference) -> None:
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference.eval()(x))


def test_imagenet_weights_download_verify_and_load(hub_dir, published_file, monkeypatch):
    reference, release = published_file
    serve(monkeypatch, release.as_uri())
    model = de.densenet121(weights="IMAGENET1K_V1", progress=False)
    assert (hub_dir / "checkpoints" / release.name).is_file()  # the standard hub cache
    same_outputs(model, reference)


def test_default_names_the_imagenet_weights(hub_dir, published_file, monkeypatch):
    reference, release = published_file
    serve(monkeypatch, release.as_uri())
    same_outputs(de.densenet121(weights="DEFAULT", progress=False), reference)


def test_download_with_a_wrong_hash_is_rejected(hub_dir, published_file, monkeypatch):
    _, release = published_file
    tampered = release.with_name("densenet121-00000000.pth")
    release.rename(tampered)
    serve(monkeypatch, tampered.as_uri())
    with pytest.raises(de.WeightsError, match="invalid hash value"):
        de.densenet121(weights="IMAGENET1K_V1", progress=False)
    assert not list((hub_dir / "checkpoints").glob("*.pth"))  # nothing bad is cached


def test_offline_download_says_what_failed_and_how_to_load_a_file(hub_dir, monkeypatch):
    # Port 9 (discard) on loopback: the connection is refused at once, like being offline.
    serve(monkeypatch, "http://127.0.0.1:9/models/densenet121-a639ec97.pth")
    with pytest.raises(de.WeightsError) as info:
        de.densenet121(weights="IMAGENET1K_V1", progress=False)
    message = str(info.value)
    assert "could not get the pretrained weights from http://127.0.0.1:9" in message
    assert "densenet121(weights='/path/to/densenet121-a639ec97.pth')" in message


def test_a_damaged_file_in_the_hub_cache_is_named_with_the_reason(hub_dir, monkeypatch):
    serve(monkeypatch, "http://127.0.0.1:9/models/densenet121-a639ec97.pth")
    cached = hub_dir / "checkpoints" / "densenet121-a639ec97.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")  # an interrupted copy
    with pytest.raises(de.WeightsError) as info:
        de.densenet121(weights="IMAGENET1K_V1", progress=False)
    message = str(info.value)
    assert "cached copy of densenet121-a639ec97.pth" in message and "is damaged" in message
    assert "empty (0 bytes)" in message and f"Delete {cached}" in message
    assert "could not get" not in message  # nothing failed to download


def test_weights_from_a_local_path(published_file):
    reference, release = published_file
    same_outputs(de.densenet121(weights=release), reference)


def test_weights_path_as_string_works_too(published_file):
    reference, release = published_file
    same_outputs(de.densenet121(weights=str(release)), reference)


def test_missing_weights_file_is_named_in_the_error(tmp_path):
    with pytest.raises(de.WeightsError, match="does not exist"):
        de.densenet121(weights=tmp_path / "nope.pth")


def test_a_directory_is_reported_as_a_directory(tmp_path, published_file):
    _, release = published_file
    with pytest.raises(de.WeightsError, match=r"is a directory \(it holds densenet121-"):
        de.densenet121(weights=release.parent)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", r"the file is empty \(0 bytes\)"),
        (b"not a checkpoint\n", r"it is a text file \(it starts with 'not a checkpoint'\)"),
        (b"\x00\x01\x02\x03garbage", r"it is not a file written by torch.save"),
    ],
)
def test_an_unreadable_file_gives_the_reason_in_words(tmp_path, content, reason):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(content)
    with pytest.raises(de.WeightsError, match=f"could not read weights from '.*bad.pth': {reason}"):
        de.densenet121(weights=bad)


def test_a_truncated_file_is_called_truncated(tmp_path, published_file):
    _, release = published_file
    cut = tmp_path / "cut.pth"
    cut.write_bytes(release.read_bytes()[:100_000])
    with pytest.raises(de.WeightsError, match="truncated or damaged"):
        de.densenet121(weights=cut)


def test_loading_refuses_pickled_code(tmp_path):
    # weights_only=True: a file that would execute code on load is refused.
    evil = tmp_path / "evil.pth"
    torch.save({"x": torch.nn.ReLU()}, evil)
    with pytest.raises(de.WeightsError, match="could not read weights.*could run code"):
        de.densenet121(weights=evil)


def test_densenet264_has_no_published_weights():
    with pytest.raises(de.WeightsError, match="no published ImageNet weights for densenet264"):
        de.densenet264(weights="IMAGENET1K_V1")


def test_bad_weights_fail_before_the_model_is_built(monkeypatch):
    def no_building(*args, **kwargs):
        raise AssertionError("the model was built before the weights were resolved")

    monkeypatch.setattr(model_module, "DenseNet", no_building)
    with pytest.raises(de.WeightsError, match="no published ImageNet weights"):
        de.densenet264(weights="IMAGENET1K_V1")


def test_an_unknown_weights_name_lists_the_published_ones():
    with pytest.raises(de.WeightsError) as info:
        de.densenet121(weights="IMAGENET1K_V2")
    message = str(info.value)
    assert "no weights named 'IMAGENET1K_V2' for densenet121" in message
    assert "'IMAGENET1K_V1'" in message and "'DEFAULT'" in message
    assert "does not exist" not in message


def test_torchvision_weight_enum_is_accepted(published_file, hub_dir, monkeypatch):
    reference, release = published_file
    serve(monkeypatch, release.as_uri())
    enum = torchvision.models.DenseNet121_Weights.IMAGENET1K_V1
    same_outputs(de.densenet121(weights=enum, progress=False), reference)


def test_torchvision_enum_of_another_model_is_refused():
    enum = torchvision.models.DenseNet161_Weights.IMAGENET1K_V1
    with pytest.raises(de.WeightsError, match="densenet121 cannot load DenseNet161_Weights"):
        de.densenet121(weights=enum)


def test_urls_are_torchvisions():
    for name, url in weights_module.WEIGHTS_URLS.items():
        enum = getattr(torchvision.models, f"DenseNet{name[8:]}_Weights").IMAGENET1K_V1
        assert enum.url == url


@pytest.mark.parametrize("name", [n for n, a in TABLE.items() if a.weights])
def test_table_figures_are_torchvisions_published_ones(name):
    # torchvision's weight enum is an independent record of the same release.
    ours = TABLE[name].weights["IMAGENET1K_V1"]
    meta = getattr(torchvision.models, f"DenseNet{name[8:]}_Weights").IMAGENET1K_V1.meta
    assert ours.params == meta["num_params"]
    accuracy = meta["_metrics"]["ImageNet-1K"]
    assert (ours.acc1, ours.acc5) == (accuracy["acc@1"], accuracy["acc@5"])
    assert (ours.gmacs, ours.file_mb) == (meta["_ops"], meta["_file_size"])
    assert ours.min_size == meta["min_size"]
    assert ours.url.endswith(f"{name}-{ours.sha256_prefix}.pth")
