"""densenet_edu.batch_chunks: the fast model runs a large CPU batch in cache-sized chunks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from densenet_edu import batch_chunks, densenet121, optimize_for_inference
from densenet_edu.batch_chunks import CHUNK_BYTES, Segment, chunk_size, run_in_chunks, segments


@pytest.fixture(scope="module")
def fast121():
    torch.manual_seed(0)
    return optimize_for_inference(densenet121().eval())


def _chunks_used(fast, x, monkeypatch) -> list[int]:
    seen: list[int] = []
    real = batch_chunks.chunk_size

    def spy(segment, inputs):
        seen.append(real(segment, inputs))
        return seen[-1]

    monkeypatch.setattr(batch_chunks, "chunk_size", spy)
    with torch.inference_mode():
        fast(x)
    return seen


def test_segments_are_the_blocks_with_the_stem_before_the_first_and_transitions_after(fast121):
    kinds = [[type(stage).__name__ for stage in s.stages] for s in fast121._segments]
    assert kinds == [
        ["PackedConv2d", "MaxPool2d", "FastDenseBlock", "_FastTransition"],
        ["FastDenseBlock", "_FastTransition"],
        ["FastDenseBlock", "_FastTransition"],
        ["FastDenseBlock", "ScaleShiftReLU"],
    ]
    assert [s.channels for s in fast121._segments] == [256, 512, 1024, 1024]


def test_densenet121_at_224_runs_batch_16_in_chunks_of_2_4_8_and_16(fast121, monkeypatch):
    # Block buffers per image: 256x56x56, 512x28x28, 1024x14x14, 1024x7x7 floats.
    per_image = [256 * 56 * 56 * 4, 512 * 28 * 28 * 4, 1024 * 14 * 14 * 4, 1024 * 7 * 7 * 4]
    expected = [min(16, 1 << ((CHUNK_BYTES // b).bit_length() - 1)) for b in per_image]
    assert expected == [2, 4, 8, 16]
    assert _chunks_used(fast121, torch.randn(16, 3, 224, 224), monkeypatch) == expected


def test_a_single_image_is_never_split(fast121, monkeypatch):
    assert _chunks_used(fast121, torch.randn(1, 3, 224, 224), monkeypatch) == [1, 1, 1, 1]


def test_chunks_are_powers_of_two_so_a_batch_gives_few_distinct_shapes():
    # Three images' buffers fit in CHUNK_BYTES: chunks of two, never three.
    segment = Segment(stages=[], steps=[], channels=CHUNK_BYTES // 3 // 4)
    sizes = {batch: chunk_size(segment, torch.empty(batch, 1, 1, 1)) for batch in (1, 3, 7, 16)}
    assert sizes == {1: 1, 3: 2, 7: 2, 16: 2}


def test_tensors_off_the_cpu_are_not_split(fast121):
    on_meta = torch.empty(16, 3, 224, 224, device="meta")
    assert chunk_size(fast121._segments[0], on_meta) == 16


def test_chunked_output_equals_the_whole_batch_through_the_stages(fast121):
    x = torch.randn(16, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        chunked = run_in_chunks(fast121._segments, x)
        whole = fast121.features(x)
    assert chunked.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


def test_the_fast_model_still_matches_the_eager_model_on_a_chunked_batch(fast121):
    torch.manual_seed(1)
    model = densenet121().eval()
    fast = optimize_for_inference(model)
    x = torch.randn(6, 3, 128, 128)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)


def test_a_stem_of_unknown_geometry_leaves_its_segment_whole():
    class Custom(nn.Module):  # changes the size in a way the geometry cannot read
        def forward(self, x):
            return x[..., ::2, ::2]

    block = nn.Identity()
    block.out_channels = 64
    (segment,) = segments([Custom(), block], lambda s: s is block)
    assert segment.channels == 0
    assert chunk_size(segment, torch.empty(16, 3, 224, 224)) == 16
