"""The ImageNet DenseNets: each one's configuration and everything published about it.

One entry per torchvision model, the way torchvision's weight enums
(``DenseNet121_Weights.IMAGENET1K_V1``) hold a model's weights URL and its published
figures together: the :class:`~densenet_edu.config.DenseNetConfig` (Table 1 of the paper;
DenseNet-161 from the authors' release), torchvision's ``IMAGENET1K_V1`` weights (URL,
SHA-256 prefix, parameter count, multiply-adds, accuracy, file size) and the paper's
ImageNet errors (Table 3). Sources (keys of the book's ``references.bib``):
``huang2017densenet`` and torchvision's model documentation.

>>> from densenet_edu.architectures import TABLE
>>> TABLE["densenet121"].config.growth_rate, TABLE["densenet121"].weights["IMAGENET1K_V1"].params
(32, 7978856)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from densenet_edu.config import DenseNetConfig

__all__ = [
    "ARCHITECTURES",
    "TABLE",
    "Architecture",
    "ImageNetError",
    "TorchvisionWeights",
    "architecture",
]


@dataclass(frozen=True)
class TorchvisionWeights:
    """What torchvision publishes for one set of weights of one model (its weight enum).

    ``url``'s file name ends with the first hex digits of the file's SHA-256
    (``sha256_prefix``), which the download checks.
    """

    arch: str
    params: int
    acc1: float  # ImageNet top-1 accuracy, %
    acc5: float
    gmacs: float  # billions of multiply-adds at 224x224 (torchvision calls them GFLOPS)
    file_mb: float
    url: str = ""
    sha256_prefix: str = ""
    name: str = "IMAGENET1K_V1"
    min_size: tuple[int, int] = (29, 29)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ImageNetError:
    """One row of the paper's Table 3: ImageNet validation error (%), top-1 / top-5."""

    arch: str
    top1_single_crop: float
    top5_single_crop: float
    top1_ten_crop: float
    top5_ten_crop: float


@dataclass(frozen=True)
class Architecture:
    """One ImageNet DenseNet: its configuration, published weights and paper figures."""

    name: str
    config: DenseNetConfig
    weights: Mapping[str, TorchvisionWeights] = field(default_factory=dict)
    paper: ImageNetError | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", MappingProxyType(dict(self.weights)))


def _weights(arch: str, params: int, acc1: float, acc5: float, gmacs: float, file_mb: float,
             sha256_prefix: str) -> dict[str, TorchvisionWeights]:  # fmt: skip
    url = f"https://download.pytorch.org/models/{arch}-{sha256_prefix}.pth"
    w = TorchvisionWeights(arch, params, acc1, acc5, gmacs, file_mb, url, sha256_prefix)
    return {w.name: w}


def _entry(name: str, k: int, blocks: tuple[int, ...], stem: int, **extra: Any) -> Architecture:
    config = DenseNetConfig(growth_rate=k, block_config=blocks, num_init_features=stem)
    return Architecture(name, config, **extra)


#: growth rate k, layers per block and stem width (Table 1; 161 from the authors' release),
#: with torchvision's IMAGENET1K_V1 weights and the paper's single-/10-crop errors.
TABLE: Mapping[str, Architecture] = MappingProxyType(
    {
        a.name: a
        for a in (
            _entry(
                "densenet121", 32, (6, 12, 24, 16), 64,
                weights=_weights("densenet121", 7_978_856, 74.434, 91.972, 2.834, 30.845,
                                 "a639ec97"),
                paper=ImageNetError("densenet121", 25.02, 7.71, 23.61, 6.66),
            ),
            _entry(
                "densenet161", 48, (6, 12, 36, 24), 96,
                weights=_weights("densenet161", 28_681_000, 77.138, 93.560, 7.728, 110.369,
                                 "8d451a50"),
            ),
            _entry(
                "densenet169", 32, (6, 12, 32, 32), 64,
                weights=_weights("densenet169", 14_149_480, 75.600, 92.806, 3.36, 54.708,
                                 "b2777c0a"),
                paper=ImageNetError("densenet169", 23.80, 6.85, 22.08, 5.92),
            ),
            _entry(
                "densenet201", 32, (6, 12, 48, 32), 64,
                weights=_weights("densenet201", 20_013_928, 76.896, 93.370, 4.291, 77.373,
                                 "c1103571"),
                paper=ImageNetError("densenet201", 22.58, 6.34, 21.46, 5.54),
            ),
            _entry(
                "densenet264", 32, (6, 12, 64, 48), 64,
                paper=ImageNetError("densenet264", 22.15, 6.12, 20.80, 5.29),
            ),
        )
    }
)  # fmt: skip


def architecture(name: str) -> Architecture:
    """The table's entry for ``name``; ``ValueError`` listing the known names otherwise."""
    if not isinstance(name, str) or name not in TABLE:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(TABLE)}")
    return TABLE[name]


#: The older view of the table: name -> the keyword arguments that differ between models
#: (``DenseNet(**ARCHITECTURES["densenet169"])`` builds DenseNet-169).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    name: dict(
        growth_rate=a.config.growth_rate,
        block_config=a.config.block_config,
        num_init_features=a.config.num_init_features,
    )
    for name, a in TABLE.items()
}
