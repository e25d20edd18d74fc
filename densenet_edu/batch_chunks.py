"""Run a fast DenseNet's stages on chunks of the batch that stay in the CPU's cache.

A dense block writes every feature map into one buffer and each layer reads all of it
again (:class:`~densenet_edu.fast.FastDenseBlock`). For a batch of 16 ImageNet images the
first block's buffer alone is 16 x 256 x 56 x 56 floats, 51 MB: more than the last-level
cache of a laptop or a small cloud machine, so every layer streams it from memory again.
Split into chunks of two images it is 6.4 MB, and the layers find it in the cache. Deeper
blocks have smaller maps and take larger chunks; the last one takes the whole batch, so
its 7 x 7 convolutions keep their big matrix products.

The batch is split per *segment*: a dense block with what runs before it (the stem) and
after it (its transition). Measured on DenseNet-121, batch 16, 2 threads (see
``benchmarks/README.md``, "Chunking the batch").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .inputs import Step, final_size, spatial_steps

__all__ = ["CHUNK_BYTES", "Segment", "chunk_size", "run_in_chunks", "segments"]

#: The most bytes of a dense block's buffer per chunk of images: small enough that the
#: buffer and a layer's temporaries stay in a last-level cache of 32 MB (2 images for
#: DenseNet-121's first block, 4, 8 and 32 for the next ones). 4 and 16 MiB measured close
#: to it, the whole batch 13% slower (benchmarks/README.md).
CHUNK_BYTES = 8 * 2**20


@dataclass
class Segment:
    """Stages that run on one chunk after another: a dense block and its neighbours.

    ``steps`` are the size-changing steps before the block (the stem's), ``channels`` the
    block's output channels (0: no block, the whole batch at once).
    """

    stages: list[nn.Module]
    steps: list[Step]
    channels: int

    def __call__(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


def segments(stages: list[nn.Module], is_block: Callable[[nn.Module], bool]) -> list[Segment]:
    """Group ``stages`` in order: each dense block starts a segment, except the first one,
    which keeps the stem before it; what follows a block (transition, norm5) joins it."""
    groups: list[list[nn.Module]] = [[]]
    for stage in stages:
        if is_block(stage) and any(is_block(s) for s in groups[-1]):
            groups.append([])
        groups[-1].append(stage)
    result = []
    for group in groups:
        block = next((s for s in group if is_block(s)), None)
        before = group[: group.index(block)] if block is not None else []
        steps = spatial_steps(nn.Sequential(*before)) if before else []
        if steps is None:  # a stem of unknown geometry: do not split this segment
            block = None
        channels = int(block.out_channels) if block is not None else 0
        result.append(Segment(group, steps or [], channels))
    return result


def chunk_size(segment: Segment, x: Tensor) -> int:
    """How many images of ``x`` the segment runs at once: a power of two, at most the batch."""
    batch = x.shape[0]
    if segment.channels == 0 or x.device.type != "cpu":
        return batch  # a GPU wants big batches; its caches are another story
    height, width = (final_size(segment.steps, side) for side in x.shape[-2:])
    per_image = segment.channels * max(height, 1) * max(width, 1) * x.element_size()
    fits = max(1, CHUNK_BYTES // per_image)
    return min(batch, 1 << (fits.bit_length() - 1))


def run_in_chunks(parts: list[Segment], x: Tensor) -> Tensor:
    """``x`` through every segment, each on chunks of the batch (see :func:`chunk_size`)."""
    for segment in parts:
        size = chunk_size(segment, x)
        if size >= x.shape[0]:
            x = segment(x)
        else:
            outputs = [segment(chunk) for chunk in x.split(size)]
            memory_format = (
                torch.channels_last
                if outputs[0].is_contiguous(memory_format=torch.channels_last)
                else torch.contiguous_format
            )
            x = torch.cat(outputs).contiguous(memory_format=memory_format)
    return x
