"""One description of a DenseNet: every model, checkpoint and training run is built from it.

>>> from densenet_edu.config import DenseNetConfig
>>> cfg = DenseNetConfig(growth_rate=12, block_config=(16, 16, 16), stem="cifar")
>>> cfg.replace(num_classes=100).num_classes
100
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from densenet_edu.validation import check_config

__all__ = ["DenseNetConfig", "DropoutPlacement", "Stem"]

Stem = Literal["imagenet", "cifar"]
DropoutPlacement = Literal["torchvision", "paper"]


@dataclass(frozen=True)
class DenseNetConfig:
    """The architecture of one DenseNet (Huang et al., 2017); defaults are DenseNet-121's.

    Attributes:
        growth_rate: k, feature maps added by every dense layer (Section 3).
        block_config: number of dense layers in each block (Table 1).
        num_init_features: k0 of the first block, the stem's output width.
        bn_size: bottleneck width as a multiple of k (4 in the paper, DenseNet-B).
        drop_rate: dropout probability, applied where ``dropout_placement`` says.
        num_classes: outputs of the classifier.
        compression: theta, the fraction of channels a transition keeps (DenseNet-C).
        bottleneck: use 1x1 bottleneck convolutions (DenseNet-B).
        memory_efficient: recompute concat + BN + ReLU + 1x1 conv in the backward pass
            (Pleiss et al., 2017) instead of storing them.
        in_channels: channels of the input image.
        stem: ``"imagenet"`` (7x7/2 conv, BN, ReLU, 3x3/2 max pool) or ``"cifar"`` (3x3 conv).
        dropout_placement: ``"torchvision"`` (after each dense layer's 3x3 conv) or
            ``"paper"`` (after every conv except the stem's).
    """

    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    drop_rate: float = 0.0
    num_classes: int = 1000
    compression: float = 0.5
    bottleneck: bool = True
    memory_efficient: bool = False
    in_channels: int = 3
    stem: Stem = "imagenet"
    dropout_placement: DropoutPlacement = "torchvision"

    def __post_init__(self) -> None:
        # One check per field (densenet_edu.validation), whoever builds the config; values
        # come back in canonical types: numpy.int64(32) -> 32, a JSON list -> a tuple.
        for name, value in check_config(self).items():
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> DenseNetConfig:
        """A copy with some fields changed (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (a list for ``block_config``), as stored in checkpoints and JSON."""
        out = dataclasses.asdict(self)
        out["block_config"] = list(self.block_config)
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DenseNetConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error naming the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown DenseNet setting(s) {unknown}; known settings: {sorted(known)}"
            )
        return cls(**dict(values))

    # Read access by key (and ``**config``) keeps code written for the old
    # ``model.config`` dict working.
    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def __getitem__(self, name: str) -> Any:
        if name not in self.keys():
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if name in self.keys() else default
