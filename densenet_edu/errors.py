"""Readable errors for bad input, raised before torch would fail deep inside a kernel."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

__all__ = ["InputShapeError", "WeightsError", "check_feature_maps"]


class InputShapeError(ValueError):
    """An input tensor has the wrong rank, channel count or spatial size."""


class WeightsError(RuntimeError):
    """Weights could not be found, downloaded or matched to the model."""


def check_feature_maps(
    features: Sequence[Tensor], expected_channels: int, where: str, min_size: int = 1
) -> None:
    """Check that ``features`` are 4-D maps of one spatial size adding up to the expected width.

    Args:
        features: tensors of shape (N, C_i, H, W) that will be concatenated on dim 1.
        expected_channels: the sum of the C_i the module was built for.
        where: the module name to put in the message.
        min_size: the smallest H and W the module can process.
    """
    for t in features:
        if not isinstance(t, Tensor):
            raise TypeError(f"{where} expects tensors, got {type(t).__name__}")
        if t.dim() != 4:
            raise InputShapeError(
                f"{where} expects a 4-D tensor (batch, channels, height, width), "
                f"got shape {tuple(t.shape)}"
                + (" (add a batch dimension with x.unsqueeze(0))" if t.dim() == 3 else "")
            )
    first = features[0]
    for t in features[1:]:
        if t.shape[0] != first.shape[0] or t.shape[2:] != first.shape[2:]:
            raise InputShapeError(
                f"{where} concatenates feature maps on the channel axis, so batch size and "
                f"height/width must agree; got shapes {[tuple(f.shape) for f in features]}"
            )
    channels = sum(t.shape[1] for t in features)
    if channels != expected_channels:
        detail = f" ({' + '.join(str(t.shape[1]) for t in features)})" if len(features) > 1 else ""
        raise InputShapeError(
            f"{where} was built for {expected_channels} input channels, got {channels}{detail}"
        )
    if first.shape[2] < min_size or first.shape[3] < min_size:
        raise InputShapeError(
            f"{where} needs feature maps of at least {min_size}x{min_size}, "
            f"got {first.shape[2]}x{first.shape[3]}"
        )
