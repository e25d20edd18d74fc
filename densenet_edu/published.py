"""Figures the papers and torchvision published, in one cited place.

The book quotes these numbers (glued from here) instead of typing them into the prose;
everything the book *computes* comes from the package instead. Sources (keys of the
book's ``references.bib``):

- ``huang2017densenet``: Huang, Liu, van der Maaten, Weinberger, "Densely Connected
  Convolutional Networks", CVPR 2017 (arXiv:1608.06993), Tables 2 and 3.
- ``pleiss2017memory``: Pleiss, Chen, Huang, Li, van der Maaten, Weinberger,
  "Memory-Efficient Implementation of DenseNets", 2017 (arXiv:1707.06990), and the
  measurements in its reference implementation's README.
- torchvision's model documentation (``IMAGENET1K_V1`` weights of ``densenet121`` etc.).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CIFAR_RESULTS",
    "IMAGENET_ERRORS",
    "PLEISS_DENSENET_BC_100",
    "TORCHVISION_WEIGHTS",
    "CifarResult",
    "ImageNetError",
    "MemoryMeasurement",
    "TorchvisionWeights",
]


@dataclass(frozen=True)
class CifarResult:
    """One row of the paper's Table 2: test error (%) on C10, C10+, C100, C100+ and SVHN.

    "+" marks standard data augmentation (translation and mirroring); None where the
    paper gives no number.
    """

    model: str  # "DenseNet" or "DenseNet-BC"
    depth: int
    growth_rate: int
    c10: float | None
    c10_plus: float
    c100: float | None
    c100_plus: float
    svhn: float | None

    @property
    def bottleneck_compression(self) -> bool:
        return self.model == "DenseNet-BC"


CIFAR_RESULTS: tuple[CifarResult, ...] = (  # huang2017densenet, Table 2
    CifarResult("DenseNet", 40, 12, 7.00, 5.24, 27.55, 24.42, 1.79),
    CifarResult("DenseNet", 100, 12, 5.77, 4.10, 23.79, 20.20, 1.67),
    CifarResult("DenseNet", 100, 24, 5.83, 3.74, 23.42, 19.25, 1.59),
    CifarResult("DenseNet-BC", 100, 12, 5.92, 4.51, 24.15, 22.27, 1.76),
    CifarResult("DenseNet-BC", 250, 24, 5.19, 3.62, 19.64, 17.60, 1.74),
    CifarResult("DenseNet-BC", 190, 40, None, 3.46, None, 17.18, None),
)


@dataclass(frozen=True)
class ImageNetError:
    """One row of the paper's Table 3: ImageNet validation error (%), top-1 / top-5."""

    arch: str
    top1_single_crop: float
    top5_single_crop: float
    top1_ten_crop: float
    top5_ten_crop: float


IMAGENET_ERRORS: dict[str, ImageNetError] = {  # huang2017densenet, Table 3
    e.arch: e
    for e in (
        ImageNetError("densenet121", 25.02, 7.71, 23.61, 6.66),
        ImageNetError("densenet169", 23.80, 6.85, 22.08, 5.92),
        ImageNetError("densenet201", 22.58, 6.34, 21.46, 5.54),
        ImageNetError("densenet264", 22.15, 6.12, 20.80, 5.29),
    )
}


@dataclass(frozen=True)
class TorchvisionWeights:
    """What torchvision publishes for its ``IMAGENET1K_V1`` weights of one model."""

    arch: str
    params: int
    acc1: float  # ImageNet top-1 accuracy, %
    acc5: float
    gmacs: float  # billions of multiply-adds at 224x224 (torchvision calls them GFLOPS)
    file_mb: float


TORCHVISION_WEIGHTS: dict[str, TorchvisionWeights] = {
    w.arch: w
    for w in (
        TorchvisionWeights("densenet121", 7_978_856, 74.434, 91.972, 2.834, 30.845),
        TorchvisionWeights("densenet161", 28_681_000, 77.138, 93.560, 7.728, 110.369),
        TorchvisionWeights("densenet169", 14_149_480, 75.600, 92.806, 3.36, 54.708),
        TorchvisionWeights("densenet201", 20_013_928, 76.896, 93.370, 4.291, 77.373),
    )
}


@dataclass(frozen=True)
class MemoryMeasurement:
    """GPU memory and time per batch of one DenseNet implementation (pleiss2017memory)."""

    implementation: str
    memory_gb: float  # peak GPU memory, weights, gradients and workspace included
    seconds_per_batch: float


# DenseNet-BC (L=100, k=12) on CIFAR, batch 64, one Titan X (Pascal): the reference
# implementation's README.
PLEISS_DENSENET_BC_100: dict[str, MemoryMeasurement] = {
    m.implementation: m
    for m in (
        MemoryMeasurement("naive", 2.863, 0.165),
        MemoryMeasurement("efficient", 1.605, 0.207),
    )
}
