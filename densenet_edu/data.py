"""Datasets for training: CIFAR-10/100 (the paper's benchmarks) and an offline digits set.

CIFAR (Section 4.1 of the paper, "Datasets"): 32x32 colour images, 50,000 for training and
10,000 for testing. The standard augmentation ("C10+", "C100+") pads each image by 4 pixels,
takes a random 32x32 crop and flips it horizontally half of the time; every image is
normalised per channel with the training set's mean and standard deviation.

``digits`` is scikit-learn's copy of the UCI handwritten digits (1,797 grayscale 8x8 images,
shipped inside scikit-learn, so nothing is downloaded). The images are upsampled to 32x32 so
the CIFAR-style network applies unchanged, and split once, stratified, into a fixed training
and test set. Its augmentation is the same pad-and-crop without the flip: a mirrored 2 is
no longer a 2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from densenet_edu.errors import DataError

__all__ = [
    "CIFAR_STATS",
    "DATASETS",
    "DataError",
    "DatasetSplits",
    "DigitsDataset",
    "load_dataset",
    "load_digits_tensors",
]

#: Names accepted by :func:`load_dataset` (and ``--dataset`` on the command line).
DATASETS = ("cifar10", "cifar100", "digits")

#: Per-channel mean and standard deviation of the CIFAR training images (pixels in [0, 1]).
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

_CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_CIFAR_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


@dataclass
class DatasetSplits:
    """A training and a test set plus what a model needs to know about them."""

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    classes: tuple[str, ...]


def load_dataset(
    name: str,
    root: str | os.PathLike = "data",
    *,
    download: bool = False,
    augment: bool = True,
    train_limit: int | None = None,
    test_limit: int | None = None,
    split_seed: int = 0,
    image_size: int = 32,
) -> DatasetSplits:
    """Load a dataset by name, with the paper's augmentation on the training split.

    Args:
        name: one of :data:`DATASETS`.
        root: folder holding (or receiving) the CIFAR files; unused for ``digits``.
        download: fetch CIFAR from the internet if it is not under ``root`` (about 170 MB).
        augment: random pad-4 crops (and, for CIFAR, horizontal flips) on the training set.
        train_limit, test_limit: keep only this many images of each split (a random but
            fixed subset, chosen with ``split_seed``), for quick experiments and tests.
        split_seed: seeds the digits train/test split and the subsets.
        image_size: side of the upsampled digits (CIFAR images are always 32x32); 16 is
            four times cheaper and still leaves the CIFAR network 4x4 maps in its last block.

    Raises:
        DataError: unknown name, data missing (and ``download=False``), corrupt files,
            or a failed download.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    for label, limit in (("train_limit", train_limit), ("test_limit", test_limit)):
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise DataError(f"{label} must be a positive number of images, got {limit!r}")
    if name == "digits":
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
            raise DataError(f"image_size must be an integer >= 8, got {image_size!r}")
        splits = _load_digits(augment, split_seed, image_size)
    else:
        splits = _load_cifar(name, root, download, augment)
    splits.train = _limit(splits.train, train_limit, split_seed)
    splits.test = _limit(splits.test, test_limit, split_seed + 1)
    return splits


# --- digits -------------------------------------------------------------------------------


def load_digits_tensors(
    size: int = 32, test_fraction: float = 0.2, split_seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's digits as float tensors in [0, 1], upsampled to ``size`` x ``size``.

    Returns:
        x_train (N_train, 1, size, size), y_train (N_train,), x_test, y_test: a stratified
        split (every digit keeps its share in both parts), the same for a given seed.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:  # pragma: no cover - scikit-learn is in the book extras
        raise DataError("the digits dataset needs scikit-learn: pip install scikit-learn") from e
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N,1,8,8)
    # Bilinear upsampling keeps the strokes smooth instead of turning pixels into 4x4 tiles.
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    labels = torch.tensor(digits.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        range(len(labels)), test_size=test_fraction, stratify=digits.target, random_state=split_seed
    )
    return images[idx_train], labels[idx_train], images[idx_test], labels[idx_test]


class DigitsDataset(Dataset):
    """Normalised digit images with an optional random pad-and-crop (no flips).

    Items are ``(image, label)`` with image of shape (1, H, W), normalised with the mean
    and standard deviation given (those of the training split).
    """

    def __init__(
        self, images: Tensor, labels: Tensor, mean: float, std: float, augment: bool, pad: int = 4
    ) -> None:
        self.images = (images - mean) / std
        self.labels = labels
        self.augment = augment
        self.pad = pad
        # Pad with the normalised value of a blank (zero) pixel: the background.
        self.fill = -mean / std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.images[index]
        if self.augment:
            image = _random_crop(image, self.pad, self.fill)
        return image, int(self.labels[index])


def _random_crop(image: Tensor, pad: int, fill: float) -> Tensor:
    """Pad by ``pad`` pixels on each side, then crop the original size at a random offset."""
    _, h, w = image.shape
    padded = F.pad(image, (pad, pad, pad, pad), value=fill)
    # torch's global generator: its state is saved in checkpoints, so resumes replay it.
    top, left = torch.randint(0, 2 * pad + 1, (2,)).tolist()
    return padded[:, top : top + h, left : left + w]


def _load_digits(augment: bool, split_seed: int, size: int) -> DatasetSplits:
    x_train, y_train, x_test, y_test = load_digits_tensors(size, split_seed=split_seed)
    mean, std = x_train.mean().item(), x_train.std().item()
    # Pad-4 on 32x32 CIFAR images shifts by up to 1/8 of the side; keep that proportion.
    pad = max(1, size // 8)
    return DatasetSplits(
        name="digits",
        train=DigitsDataset(x_train, y_train, mean, std, augment=augment, pad=pad),
        test=DigitsDataset(x_test, y_test, mean, std, augment=False),
        num_classes=10,
        in_channels=1,
        classes=tuple(str(d) for d in range(10)),
    )


# --- CIFAR --------------------------------------------------------------------------------


def _load_cifar(name: str, root: str | os.PathLike, download: bool, augment: bool) -> DatasetSplits:
    try:
        from torchvision import datasets, transforms
    except ImportError as e:  # pragma: no cover - torchvision is in the book extras
        raise DataError(f"{_CIFAR_NAMES[name]} needs torchvision: pip install torchvision") from e
    folder = os.path.join(os.fspath(root), _CIFAR_FOLDERS[name])
    if not download and not os.path.isdir(folder):
        raise DataError(
            f"{_CIFAR_NAMES[name]} not found: expected the folder {folder}; "
            "pass --download (download=True) to fetch it, or --data-dir to point at a copy"
        )
    mean, std = CIFAR_STATS[name]
    normalise = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    augmentation = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    train_tf = transforms.Compose((augmentation if augment else []) + normalise)
    test_tf = transforms.Compose(normalise)
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        train = cls(root, train=True, transform=train_tf, download=download)
        test = cls(root, train=False, transform=test_tf, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise DataError(
            f"{_CIFAR_NAMES[name]} under {folder} is incomplete or corrupt ({e})"
        ) from e
    except OSError as e:  # no network, DNS failure, disk full, ...
        raise DataError(f"could not download {_CIFAR_NAMES[name]} to {root}: {e}") from e
    return DatasetSplits(
        name=name,
        train=train,
        test=test,
        num_classes=len(train.classes),
        in_channels=3,
        classes=tuple(train.classes),
    )


def _limit(dataset: Dataset, limit: int | None, seed: int) -> Dataset:
    """A fixed random subset of ``limit`` items (the whole dataset if it is smaller)."""
    n = len(dataset)  # type: ignore[arg-type]
    if limit is None or limit >= n:
        return dataset
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return Subset(dataset, sorted(order[:limit].tolist()))
