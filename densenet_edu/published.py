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

The ImageNet figures (Table 3, torchvision's weights) are held per model in
:data:`densenet_edu.architectures.TABLE`, next to each configuration;
:data:`IMAGENET_ERRORS` and :data:`TORCHVISION_WEIGHTS` are views of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from densenet_edu.architectures import TABLE, ImageNetError, TorchvisionWeights

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


# The ImageNet figures live beside each model's configuration in
# densenet_edu.architectures.TABLE; these are views of it, by model name.
IMAGENET_ERRORS: dict[str, ImageNetError] = {  # huang2017densenet, Table 3
    name: a.paper for name, a in TABLE.items() if a.paper is not None
}

TORCHVISION_WEIGHTS: dict[str, TorchvisionWeights] = {  # IMAGENET1K_V1 of each model
    name: a.weights["IMAGENET1K_V1"] for name, a in TABLE.items() if "IMAGENET1K_V1" in a.weights
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
