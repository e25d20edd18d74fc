"""Datasets: the offline digits set and CIFAR in torchvision's on-disk format."""

from __future__ import annotations

import pytest
import torch

from densenet_edu.data import DataError, load_dataset
from densenet_edu.errors import DataError as DataErrorHome


def test_digits_split_is_stratified_80_20_and_fixed_by_the_seed():
    a = load_dataset("digits")
    b = load_dataset("digits")
    assert (len(a.train), len(a.test)) == (1437, 360)  # 1797 images in scikit-learn
    assert torch.equal(a.test.labels, b.test.labels)
    assert torch.equal(a.test.images, b.test.images)
    counts = torch.bincount(a.test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # about 36 of each digit
    c = load_dataset("digits", split_seed=1)
    assert not torch.equal(a.test.labels, c.test.labels)


def test_digits_are_upsampled_single_channel_images_normalised_on_the_training_set():
    data = load_dataset("digits", augment=False)
    image, label = data.train[0]
    assert image.shape == (1, 32, 32) and isinstance(label, int)
    assert (data.num_classes, data.in_channels) == (10, 1)
    pixels = data.train.images
    assert pixels.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert pixels.std().item() == pytest.approx(1.0, abs=1e-5)


def test_digits_image_size_is_configurable():
    image, _ = load_dataset("digits", image_size=16).train[0]
    assert image.shape == (1, 16, 16)


def test_training_images_are_randomly_shifted_test_images_are_not():
    data = load_dataset("digits")
    torch.manual_seed(0)
    crops = {data.train[5][0].numpy().tobytes() for _ in range(10)}
    assert len(crops) > 1
    assert torch.equal(data.test[5][0], data.test[5][0])
    assert torch.equal(data.test[5][0], data.test.images[5])


def test_a_training_image_is_a_window_of_the_padded_original():
    data = load_dataset("digits")  # 32x32 digits are padded by 32 // 8 = 4 pixels
    original = data.train.images[0]
    padded = torch.nn.functional.pad(original, (4, 4, 4, 4), value=data.train.fill)
    torch.manual_seed(3)
    shifted, _ = data.train[0]
    windows = [padded[:, t : t + 32, x : x + 32] for t in range(9) for x in range(9)]
    assert any(torch.equal(shifted, w) for w in windows)


def test_limits_take_a_fixed_subset_of_the_requested_size():
    a = load_dataset("digits", train_limit=50, test_limit=20)
    b = load_dataset("digits", train_limit=50, test_limit=20)
    assert (len(a.train), len(a.test)) == (50, 20)
    assert a.train.indices == b.train.indices


@pytest.mark.parametrize("limit", [0, -3, 2.5])
def test_nonsensical_limits_are_rejected(limit):
    with pytest.raises(DataError, match="train_limit"):
        load_dataset("digits", train_limit=limit)


def test_unknown_dataset_names_the_choices():
    with pytest.raises(DataError, match="unknown dataset 'mnist'.*cifar10, cifar100, digits"):
        load_dataset("mnist")


def test_missing_cifar_folder_says_where_it_looked_and_how_to_download(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py.*--download"):
        load_dataset("cifar10", tmp_path)


def test_incomplete_cifar_folder_is_reported_as_corrupt(tmp_path):
    pytest.importorskip("torchvision")
    (tmp_path / "cifar-100-python").mkdir()
    with pytest.raises(DataError, match="incomplete or corrupt"):
        load_dataset("cifar100", tmp_path)


def test_cifar10_loads_from_torchvisions_on_disk_format(tmp_path, fake_cifar10):
    data = load_dataset("cifar10", fake_cifar10(tmp_path, per_batch=2))
    assert (len(data.train), len(data.test)) == (10, 2)
    assert data.classes[0] == "airplane" and data.num_classes == 10
    image, label = data.train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label == 0
    # The fake writer's labels: image j of training batch i is (i + j) % 10.
    assert [data.train[j][1] for j in range(4)] == [0, 1, 1, 2]


def test_data_errors_live_with_the_other_errors():
    assert DataError is DataErrorHome and issubclass(DataError, ValueError)
