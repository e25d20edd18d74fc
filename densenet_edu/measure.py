"""How the book and the benchmark measure memory and time: one definition of each quantity.

Chapters 8 and 11, :mod:`densenet_edu.bench` and the tests all measure with this module,
so a number called "saved for backward" or "median time" means the same everywhere:

- **Saved for backward** (:class:`SavedTensorCounter`, :func:`saved_tensor_bytes`): the
  bytes of the distinct storages behind the tensors autograd saves for the backward pass,
  each storage counted once, the model's parameters and buffers left out. That is the
  *activation memory* a training step holds between its forward and its backward pass.
  It is exact and does not depend on the allocator or the device.
- **Peak memory growth** (:func:`peak_memory_growth`): how far memory rises above its
  level just before a call, at the call's highest point: the allocator's peak on CUDA,
  the process's resident anonymous memory sampled every millisecond on the CPU
  (:class:`PeakRSSSampler`). It includes temporaries of the backward pass, so it exceeds
  the saved bytes; and on the CPU it depends on the memory allocator.
- **Time** (:func:`time_interleaved`, :func:`medians`): seconds per call of several
  contenders run in turn after warm-up rounds; report the **median** of the timed calls.
  How firmly one contender beats another: the spread of the per-round ratios of their
  times (:func:`round_ratio_quartiles`).

:func:`calibrate_batchnorm` and :func:`make_train_step` set up what is measured.
"""

from __future__ import annotations

import resource
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from densenet_edu.onednn import PackedConv2d
from densenet_edu.progress import progress_bar

__all__ = [
    "PeakRSSSampler",
    "SavedTensorCounter",
    "anonymous_rss_bytes",
    "calibrate_batchnorm",
    "held_bytes",
    "make_train_step",
    "gemm_calls",
    "matmul_peak_gflops",
    "medians",
    "peak_memory_growth",
    "round_ratio_quartiles",
    "saved_tensor_bytes",
    "storage_key",
    "time_interleaved",
]


# --- saved for backward --------------------------------------------------------------


def storage_key(t: Tensor) -> tuple[Any, ...] | None:
    """Where `t`'s data lives: (device, address) of its storage, or None when unknown.

    Views (a slice, a transpose, an in-place op's result) share their base's storage and
    so its key. Tensors without an addressable storage (sparse tensors, meta tensors,
    whose address is 0) have no key.
    """
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # e.g. "Cannot access storage of SparseTensorImpl"
        return None
    address = storage.data_ptr()
    return (storage.device, address) if address != 0 else None


def held_bytes(t: Tensor) -> int:
    """Bytes kept alive by holding `t`: its whole storage (a view holds all of it)."""
    try:
        return t.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError):
        return t.numel() * t.element_size()  # no storage of its own: its logical size


class SavedTensorCounter:
    """Counts the bytes autograd saves for backward while the context is active.

    Definition (the one the book and the benchmark use): the bytes of the **distinct
    storages** behind the saved tensors. A storage counts once however many operations
    save it or views of it (a BatchNorm and the in-place ReLU after it save the same
    storage); a saved view counts its whole storage, which it keeps alive. Storages of
    the ``exclude`` tensors (the model's parameters and buffers: in memory anyway) are
    left out, also when saved as views such as a linear layer's transposed weight. The
    result is the activation memory autograd holds for the backward pass.

    A tensor without an addressable storage (sparse, or on the ``meta`` device) counts
    its storage's bytes (for sparse tensors: numel x element size) once per tensor object.

    Count one forward pass inside the context and keep its output alive until the
    context ends (as a training step does): storages freed earlier could be reused at
    the same address and would then count once for two.

    Example::

        with SavedTensorCounter(exclude=model) as counter:
            loss = F.cross_entropy(model(x), y)
        counter.nbytes  # activation memory of this forward pass, in bytes
    """

    def __init__(self, exclude: nn.Module | Iterable[Tensor] = ()) -> None:
        if isinstance(exclude, nn.Module):
            exclude = [*exclude.parameters(), *exclude.buffers()]
        self._excluded = {key for t in exclude if (key := storage_key(t)) is not None}
        self._sizes: dict[Any, int] = {}
        self._hooks: torch.autograd.graph.saved_tensors_hooks | None = None

    @property
    def nbytes(self) -> int:
        """Bytes saved for backward so far (distinct storages, excluded ones left out)."""
        return sum(self._sizes.values())

    @property
    def num_storages(self) -> int:
        """How many distinct storages were saved so far."""
        return len(self._sizes)

    def __enter__(self) -> SavedTensorCounter:
        if self._hooks is not None:
            raise RuntimeError("this SavedTensorCounter is already active")
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._hooks is not None
        self._hooks.__exit__(*exc)
        self._hooks = None

    def _pack(self, t: Tensor) -> Tensor:
        """Called by autograd for every tensor it saves; returns it unchanged."""
        key = storage_key(t)
        if key is None:
            key = ("tensor", id(t))  # alive as long as autograd holds it: a unique id
        if key not in self._excluded:
            self._sizes[key] = held_bytes(t)  # one entry per storage: counted once
        return t


def saved_tensor_bytes(model: nn.Module, x: Tensor) -> int:
    """Bytes saved for backward (see :class:`SavedTensorCounter`) by one training-mode
    forward pass of ``model`` on ``x``, parameters and buffers excluded.

    Shapes: ``x`` is whatever the model takes, e.g. (N, 3, H, W). The model runs in
    training mode (BatchNorm with batch statistics, as in training) and is left as it
    was: its previous mode, and its buffers (BatchNorm's running statistics, which the
    pass updates) restored.
    """
    was_training = model.training
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        with SavedTensorCounter(exclude=model) as counter:
            out = model.train()(x)
            del out  # the graph lives until here: no address is reused while counting
    finally:
        model.train(was_training)
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
    return counter.nbytes


# --- what is measured ----------------------------------------------------------------


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, x: Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics from one forward pass on ``x`` (in place).

    Randomly initialised models have mean 0 / variance 1 statistics, so in eval mode
    activations drift in scale from layer to layer; calibrated statistics keep them
    realistic (and make BatchNorm folding non-trivial). Returns the model in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0  # the running statistics become this batch's statistics
    model.train()(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return model.eval()


def make_train_step(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    autocast_dtype: torch.dtype | None = None,
) -> Callable[[], Tensor]:
    """A function running one training step on (``x``, ``y``) and returning its loss.

    The step is forward, cross-entropy, backward and an SGD update with Nesterov
    momentum 0.9, as in the paper (Section 4.2), with a small learning rate (1e-3) so
    that repeated steps on one batch stay well behaved. ``autocast_dtype`` (bfloat16
    or float16) runs forward and loss under ``torch.autocast``; the model stays float32.

    Shapes: ``x`` (N, C, H, W) on the model's device, ``y`` (N,) class indices.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)
    model.train()

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(
            x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None
        ):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


# --- time ----------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    contenders: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int,
    device: torch.device | str = "cpu",
    desc: str = "",
    settle: int = 0,
) -> dict[str, list[float]]:
    """Seconds per call of each contender, running them in turn: A, B, C, then B, C, A, ...

    ``warmup`` untimed rounds come first (one-off costs: allocator, oneDNN primitive
    caches, compilation), then ``repeats`` timed rounds. Interleaving spreads any change
    in machine load over all contenders instead of penalising whichever ran during a busy
    spell, and rotating the order each round spreads position effects too (on CPU we
    measured the first contender of a round running up to 10% slower than the others).

    ``settle`` untimed calls of a contender come right before each of its timed calls:
    engines with their own thread pools leave threads spinning or waking up after a run,
    and on a CPU with few cores those threads slow whatever runs next (the fast model
    timed right after ONNX Runtime with its default spinning took 104-115 ms instead of
    43-54 ms at batch 1); the settling call absorbs that hand-over.

    Returns every timed call; summarise each list with its **median** (:func:`medians`),
    which one disturbed call cannot drag along, unlike the mean.
    """
    if repeats < 1 or warmup < 0 or settle < 0:
        raise ValueError(
            f"need repeats >= 1, warmup >= 0 and settle >= 0, got {repeats}, {warmup}, {settle}"
        )
    device = torch.device(device)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    rounds = progress_bar(range(warmup + repeats), desc=desc or "timing", leave=True)
    for r in rounds:
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            fn = contenders[name]
            for _ in range(settle if r >= warmup else 0):
                fn()
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    rounds.close()
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    """The median of each contender's timed calls (the figure the book and benchmark report)."""
    return {name: statistics.median(t) for name, t in times.items()}


def round_ratio_quartiles(
    times: Sequence[float], baseline: Sequence[float]
) -> tuple[float, float, float]:
    """Quartiles (lower, median, upper) of ``times[i] / baseline[i]`` over the rounds.

    Both lists come from one :func:`time_interleaved` run, in round order: the two calls
    of a round ran seconds apart at most, under much the same machine load, so their
    ratio cancels most of what the machine did meanwhile. The middle half of these ratios
    (lower to upper quartile) says how firmly one contender beats the other; the ratio of
    the two medians alone does not. Quartiles lie within the observed ratios
    (``statistics.quantiles``, inclusive method).

    Raises:
        ValueError: if the lists differ in length or hold fewer than two rounds.
    """
    if len(times) != len(baseline) or len(times) < 2:
        raise ValueError(
            "need the same number of rounds (at least 2) for both contenders, got "
            f"{len(times)} and {len(baseline)}"
        )
    ratios = [t / b for t, b in zip(times, baseline, strict=True)]
    lower, median, upper = statistics.quantiles(ratios, n=4, method="inclusive")
    return lower, median, upper


def gemm_calls(n: int = 2048, device: torch.device | str = "cpu") -> dict[str, Callable[[], Any]]:
    """An (n x n) @ (n x n) fp32 product through each GEMM library torch reaches here.

    ``torch.mm`` (MKL on an x86 CPU, cuBLAS on a GPU) and, on a CPU with oneDNN, the same
    product as a 1x1 convolution (n channels in and out, n pixels) through oneDNN with
    its weight prepacked. Both count: MKL runs its AVX2 code on AMD processors, where
    oneDNN uses AVX-512 when the CPU has it (measured 183 against 214 GFLOP/s on an
    AVX-512 EPYC), so the faster of the two is the machine's practical peak.
    """
    device = torch.device(device)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    calls: dict[str, Callable[[], Any]] = {"torch.mm": lambda: a @ b}
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        conv = PackedConv2d(nn.Conv2d(n, n, 1, bias=False)).requires_grad_(False)
        conv.weight.copy_(b.t().reshape(n, n, 1, 1))  # out[o, p] = sum_c W[o, c] a[p, c]
        conv = conv.to(memory_format=torch.channels_last)
        pixels = a.view(1, 1, n, n).permute(0, 3, 1, 2)  # (1, n, 1, n): n pixels, NHWC

        def onednn() -> Tensor:
            with torch.no_grad():
                return conv(pixels)[0, :, 0].t()  # a @ b, (n, n): a view, no copy

        calls["oneDNN"] = onednn
    return calls


def matmul_peak_gflops(
    n: int = 2048, repeats: int = 5, device: torch.device | str = "cpu"
) -> float:
    """The machine's practical fp32 peak: GFLOP/s of the fastest (n x n) @ (n x n) GEMM.

    A large square GEMM is the most compute-bound operation there is (2 n^3 flops on
    3 n^2 numbers), so its speed, with torch's thread count, is what the CPU (or GPU)
    delivers at best; a model's GFLOP/s divided by it is the fraction of the limit it
    reaches. Each library of :func:`gemm_calls` is timed in the same rounds; the median of
    ``repeats`` timed calls after one warm-up, of the faster library.
    """
    times = time_interleaved(gemm_calls(n, device), repeats, 1, device, desc="matmul peak")
    return max(2 * n**3 / statistics.median(t) / 1e9 for t in times.values())


# --- peak memory ---------------------------------------------------------------------


def anonymous_rss_bytes() -> int:
    """Resident anonymous memory of this process now (tensors, heap), from /proc (Linux).

    ``resident - shared`` from ``/proc/self/statm`` leaves out file-backed pages such as
    torch's own libraries, which the kernel may drop and reload at any time under memory
    pressure.
    """
    fields = Path("/proc/self/statm").read_text().split()
    return (int(fields[1]) - int(fields[2])) * resource.getpagesize()


class PeakRSSSampler:
    """The highest :func:`anonymous_rss_bytes` while the context is active (``.peak``).

    A thread samples every ``interval`` seconds. The kernel's own high-water mark
    (``ru_maxrss``) counts file-backed pages too and only ever rises, so a step that
    peaks below an earlier peak would be invisible. Sampling misses spikes shorter than
    ``interval``; a training step's activations stay allocated for the whole backward
    pass, far longer.
    """

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.peak = anonymous_rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, anonymous_rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, anonymous_rss_bytes())


def peak_memory_growth(fn: Callable[[], Any], device: torch.device | str = "cpu") -> int:
    """Bytes by which memory rises above its level just before ``fn()``, at its peak.

    CUDA: ``torch.cuda.max_memory_allocated`` above ``memory_allocated`` before the call
    (tensors only, exact). CPU: :class:`PeakRSSSampler` above :func:`anonymous_rss_bytes`
    before the call; memory the process freed earlier may be reused and hide growth, so
    measure in a fresh process (as :mod:`densenet_edu.bench` does).
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    before = anonymous_rss_bytes()
    with PeakRSSSampler() as sampler:
        fn()
    return int(sampler.peak - before)
