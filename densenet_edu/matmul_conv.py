"""A 1x1 convolution computed as one matrix product on channels_last feature maps.

In NHWC order a feature map of N images is an (N*H*W, C) matrix whose rows are pixels,
and a 1x1 convolution with weight (C_out, C) is ``X @ W.T + b``: exactly one matrix
product, with no reordering of the input. :class:`MatmulConv1x1` calls ``torch.addmm``
(the BLAS ``sgemm`` of MKL or OpenBLAS) on that matrix. Measured on DenseNet-121's 1x1
convolutions (``benchmarks/README.md``), the BLAS call is faster than oneDNN's
convolution at every size there, and its fixed cost per call is a few microseconds
where oneDNN's is about 50: a batch-1 forward pass has 61 of these convolutions.

Like :class:`~densenet_edu.onednn.PackedConv2d`, the direct path runs only where it is
exact and needed (CPU, float32, no autograd, not traced); everywhere else it is an
ordinary ``nn.Conv2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densenet_edu.onednn import direct_call_allowed

__all__ = ["MatmulConv1x1", "is_pointwise"]


def is_pointwise(conv: nn.Module) -> bool:
    """Is ``conv`` a 1x1 convolution that sees exactly one input pixel per output pixel?"""
    return (
        isinstance(conv, nn.Conv2d)
        and tuple(conv.kernel_size) == (1, 1)
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.padding) == (0, 0)
        and conv.groups == 1
    )


class MatmulConv1x1(nn.Conv2d):
    """``relu(conv(x))`` (or ``conv(x)``) for a 1x1 convolution, as ``addmm`` over pixels.

    Built from an existing 1x1 convolution without padding or stride (copied, not
    shared); same parameters and ``state_dict`` as ``nn.Conv2d``.

    Shapes: (N, C_in, H, W) -> (N, C_out, H, W); on the direct path the input is
    channels_last and so is the output.
    """

    def __init__(self, conv: nn.Conv2d, relu: bool = False) -> None:
        if not is_pointwise(conv):
            raise ValueError(
                "MatmulConv1x1 needs a 1x1 convolution with stride 1 and one group, without "
                f"padding; got {conv}"
            )
        super().__init__(
            conv.in_channels, conv.out_channels, 1, bias=conv.bias is not None,
            device=conv.weight.device, dtype=conv.weight.dtype,
        )  # fmt: skip
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if conv.bias is not None:
                self.bias.copy_(conv.bias)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        if not direct_call_allowed(x, self.weight):
            out = super().forward(x)
            return F.relu(out, inplace=True) if self.relu else out
        # In NHWC order the input *is* the (pixels, channels) matrix; a copy otherwise.
        x = x.contiguous(memory_format=torch.channels_last)
        n, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(n * h * w, c)  # a view: rows are pixels
        weight_t = self.weight.view(self.out_channels, c).t()
        if self.bias is not None:
            out = torch.addmm(self.bias, pixels, weight_t)
        else:
            out = torch.mm(pixels, weight_t)
        if self.relu:
            out.relu_()
        return out.view(n, h, w, self.out_channels).permute(0, 3, 1, 2)  # channels_last

    def extra_repr(self) -> str:
        return super().extra_repr() + (", then ReLU" if self.relu else "")
