"""oneDNN convolutions set up once and run through oneDNN's C API, with no per-call setup.

At batch 1 the last dense blocks of DenseNet-121 compute on 14 x 14 and 7 x 7 maps, where
a layer's arithmetic takes 100-300 us and PyTorch's path to oneDNN costs as much again on
every call: its wrapper builds memory descriptors and attributes, hashes the primitive-cache
key and allocates, and MKL's matrix products start from PyTorch's plain weight layout.
Engines such as OpenVINO build each convolution's *primitive* once, with its weights
reordered into the layout its kernel reads, and then only execute it. :class:`Convolution`
does the same from Python: it builds a oneDNN convolution for fixed input and output
tensors (their storage is bound at construction), reorders the weight once, and each call
is one ``dnnl_primitive_execute`` through :mod:`ctypes`. The dense blocks' plans use it
(:mod:`densenet_edu.block_plan`); measured gains: ``benchmarks/README.md``.

Where the library comes from: the ``onednn-cpu-gomp`` wheel on PyPI (Linux x86-64;
``pip install onednn-cpu-gomp``), oneDNN built with GNU OpenMP, the runtime PyTorch's Linux
wheels load, so both share one thread pool and ``torch.set_num_threads`` applies to both.
PyTorch's own copy of oneDNN cannot be called this way: its symbols are not exported.
Without the wheel, on other systems, with another OpenMP runtime, or with the environment
variable ``DENSENET_EDU_ONEDNN_PRIMITIVES=0``, :func:`available` is False
(:func:`unavailable_reason` says why) and the plans use ATen's operators instead.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import os
import platform
import weakref
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["Convolution", "OneDNNError", "available", "library_path", "unavailable_reason"]

ENV_SWITCH = "DENSENET_EDU_ONEDNN_PRIMITIVES"
DISTRIBUTION = "onednn-cpu-gomp"

# Values from oneDNN 3.x's C headers (dnnl_types.h, dnnl_common_types.h); stable in 3.x.
_F32, _FORMAT_ANY, _CPU_ENGINE, _IN_ORDER_STREAM = 3, 1, 1, 1
_FORWARD_INFERENCE, _CONVOLUTION_DIRECT, _ELTWISE_RELU = 96, 1, 0x20
_QUERY_IMPL_INFO, _QUERY_WEIGHTS_MD, _QUERY_SCRATCHPAD_MD = 8, 131, 136
_SCRATCHPAD_USER = 1
_ARG_SRC, _ARG_DST, _ARG_WEIGHTS, _ARG_BIAS, _ARG_SCRATCHPAD = 1, 17, 33, 41, 80
_STATUS = {
    1: "out of memory",
    2: "invalid arguments",
    3: "unimplemented (no kernel for this case)",
    4: "last implementation reached",
    5: "runtime error",
    6: "not required",
}

_Handle = ctypes.c_void_p
_Dims = ctypes.c_int64 * 12


class _ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", _Handle)]


class OneDNNError(RuntimeError):
    """A oneDNN C API call failed; the message names the call and oneDNN's status."""


def library_path() -> str | None:
    """Where ``libdnnl.so.3`` of the ``onednn-cpu-gomp`` wheel is installed, or None."""
    try:
        files = importlib.metadata.distribution(DISTRIBUTION).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "libdnnl.so.3":
            return str(file.locate())
    return None


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str]:
    """The library and an empty reason, or None and why it cannot be used (checked once)."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None, f"the {DISTRIBUTION} wheel exists for Linux x86-64 only"
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None, "this PyTorch does not run its CPU threads on OpenMP"
    path = library_path()
    if path is None:
        return None, f"{DISTRIBUTION} is not installed (pip install {DISTRIBUTION})"
    try:
        lib = ctypes.CDLL(path)
    except OSError as error:
        return None, f"could not load {path}: {error}"
    # Two OpenMP runtimes would give two thread pools fighting over the same cores.
    runtimes = {
        line.split()[-1] for line in _mapped_files() if "libgomp" in line or "libiomp" in line
    }
    if len(runtimes) > 1:
        return None, f"two OpenMP runtimes are loaded ({', '.join(sorted(runtimes))})"
    _declare(lib)
    return lib, ""


def _mapped_files() -> list[str]:
    try:
        with open("/proc/self/maps") as maps:
            return [line for line in maps if "/" in line]
    except OSError:
        return []


def _declare(lib: ctypes.CDLL) -> None:
    lib.dnnl_primitive_desc_query_md.restype = _Handle
    lib.dnnl_primitive_desc_query_md.argtypes = [_Handle, ctypes.c_int, ctypes.c_int]
    lib.dnnl_primitive_desc_query.argtypes = [_Handle, ctypes.c_int, ctypes.c_int, _Handle]
    lib.dnnl_memory_desc_get_size.restype = ctypes.c_size_t
    lib.dnnl_memory_desc_get_size.argtypes = [_Handle]
    lib.dnnl_primitive_execute.argtypes = [_Handle, _Handle, ctypes.c_int, _Handle]
    lib.dnnl_post_ops_append_eltwise.argtypes = [
        _Handle,
        ctypes.c_int,
        ctypes.c_float,
        ctypes.c_float,
    ]


def available() -> bool:
    """Can :class:`Convolution` run here (and is it switched on)?"""
    return not unavailable_reason()


def unavailable_reason() -> str:
    """Why :class:`Convolution` cannot run here, or ``""`` when it can."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return f"switched off ({ENV_SWITCH}=0)"
    return _load()[1]


def _lib() -> ctypes.CDLL:
    lib, reason = _load()
    if lib is None:
        raise OneDNNError(f"oneDNN's C API is not available: {reason}")
    return lib


def _check(status: int, call: str) -> None:
    if status != 0:
        raise OneDNNError(f"{call} failed: {_STATUS.get(status, f'status {status}')}")


@functools.cache
def _engine_and_stream() -> tuple[_Handle, _Handle]:
    lib = _lib()
    engine, stream = _Handle(), _Handle()
    _check(lib.dnnl_engine_create(ctypes.byref(engine), _CPU_ENGINE, 0), "dnnl_engine_create")
    _check(lib.dnnl_stream_create(ctypes.byref(stream), engine, _IN_ORDER_STREAM), "stream")
    return engine, stream


class _Owned:
    """oneDNN objects to destroy, in reverse order, when their owner is collected."""

    def __init__(self, owner: object) -> None:
        self.handles: list[tuple[str, _Handle]] = []
        self.finalizer = weakref.finalize(owner, _destroy, _lib(), self.handles)

    def add(self, kind: str, handle: _Handle) -> _Handle:
        self.handles.append((kind, handle))
        return handle


def _destroy(lib: ctypes.CDLL, handles: list[tuple[str, _Handle]]) -> None:
    for kind, handle in reversed(handles):
        if handle.value:  # set only once its create call succeeded
            getattr(lib, f"dnnl_{kind}_destroy")(handle)


class Convolution:
    """``dst = relu(conv2d(src, weight, bias, padding=padding))`` (ReLU optional), one
    oneDNN primitive set up for these very tensors; calling it runs it.

    Args:
        src: (N, C_in, H, W) float32 CPU tensor, any strides (NHWC is what oneDNN's
            fastest kernels read). Its storage is bound now: a call reads what it holds
            then, so write the input into it, do not replace it.
        weight: (C_out, C_in, kH, kW). Reordered once, now, into the layout the kernel
            reads: later edits to ``weight`` are not seen (build a new one).
        bias: (C_out,) or None. Bound, not copied: in-place edits are seen.
        dst: (N, C_out, H', W'), written by each call. Give it dense NHWC storage: with
            strided channels (a slice of a wider buffer) oneDNN falls back to its
            reference kernel, which :attr:`implementation` then names.
        padding: zero padding on every side; stride 1.
        relu: apply the ReLU in the same pass over the output (a oneDNN post-op).

    Raises:
        OneDNNError: if oneDNN's C API is not available or rejects the convolution.
    """

    def __init__(
        self,
        src: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        dst: Tensor,
        padding: int,
        relu: bool = False,
    ) -> None:
        for name, t in (("src", src), ("weight", weight), ("bias", bias), ("dst", dst)):
            if t is not None and (t.dtype != torch.float32 or t.device.type != "cpu"):
                raise ValueError(f"{name} must be a float32 CPU tensor, got {t.dtype} {t.device}")
        lib, (engine, stream) = _lib(), _engine_and_stream()
        owned = self._owned = _Owned(self)
        attr = owned.add("primitive_attr", _Handle())
        _check(lib.dnnl_primitive_attr_create(ctypes.byref(attr)), "dnnl_primitive_attr_create")
        _check(lib.dnnl_primitive_attr_set_scratchpad_mode(attr, _SCRATCHPAD_USER), "scratchpad")
        if relu:
            post_ops = owned.add("post_ops", _Handle())
            _check(lib.dnnl_post_ops_create(ctypes.byref(post_ops)), "dnnl_post_ops_create")
            _check(lib.dnnl_post_ops_append_eltwise(post_ops, _ELTWISE_RELU, 0.0, 0.0), "ReLU")
            _check(lib.dnnl_primitive_attr_set_post_ops(attr, post_ops), "set post-ops")
        src_md, dst_md = self._desc(src), self._desc(dst)
        bias_md = self._desc(bias) if bias is not None else None
        any_weight_md = owned.add("memory_desc", _Handle())
        _check(
            lib.dnnl_memory_desc_create_with_tag(
                ctypes.byref(any_weight_md), 4, _Dims(*weight.shape), _F32, _FORMAT_ANY
            ),
            "weights descriptor",
        )
        pd = owned.add("primitive_desc", _Handle())
        pads = _Dims(padding, padding)
        _check(
            lib.dnnl_convolution_forward_primitive_desc_create(
                ctypes.byref(pd),
                engine,
                _FORWARD_INFERENCE,
                _CONVOLUTION_DIRECT,
                src_md,
                any_weight_md,
                bias_md,
                dst_md,
                _Dims(1, 1),
                _Dims(0, 0),
                pads,
                pads,
                attr,
            ),
            f"convolution {tuple(src.shape)} x {tuple(weight.shape)} -> {tuple(dst.shape)}",
        )
        info = ctypes.c_char_p()
        lib.dnnl_primitive_desc_query(pd, _QUERY_IMPL_INFO, 0, ctypes.byref(info))
        #: The kernel oneDNN chose, e.g. ``brgconv:avx512_core`` (``ref:any``: its slow
        #: reference code).
        self.implementation = (info.value or b"").decode()
        self._primitive = owned.add("primitive", _Handle())
        _check(lib.dnnl_primitive_create(ctypes.byref(self._primitive), pd), "primitive_create")

        packed_md = _Handle(lib.dnnl_primitive_desc_query_md(pd, _QUERY_WEIGHTS_MD, 0))
        scratch_md = _Handle(lib.dnnl_primitive_desc_query_md(pd, _QUERY_SCRATCHPAD_MD, 0))
        # oneDNN's blocked layouts may pad channels; the sizes come from its descriptors.
        self._packed = _storage(lib.dnnl_memory_desc_get_size(packed_md))
        self._scratch = _storage(lib.dnnl_memory_desc_get_size(scratch_md))
        self._reorder_weight(weight, packed_md)
        self._keep = (src, bias, dst)  # the storage bound below must outlive the primitive
        args = [
            (_ARG_SRC, self._memory(src_md, src.data_ptr())),
            (_ARG_WEIGHTS, self._memory(packed_md, self._packed.data_ptr())),
            (_ARG_DST, self._memory(dst_md, dst.data_ptr())),
            (_ARG_SCRATCHPAD, self._memory(scratch_md, self._scratch.data_ptr())),
        ]
        if bias is not None:
            args.append((_ARG_BIAS, self._memory(bias_md, bias.data_ptr())))
        self._args = (_ExecArg * len(args))(*(_ExecArg(a, m) for a, m in args))
        self._execute: Callable[..., int] = lib.dnnl_primitive_execute
        self._stream = stream

    def __call__(self) -> None:
        """Run the convolution: read ``src`` and write ``dst`` as they are now."""
        status = self._execute(self._primitive, self._stream, len(self._args), self._args)
        if status != 0:
            _check(status, "dnnl_primitive_execute")

    def _desc(self, t: Tensor) -> _Handle:
        md = self._owned.add("memory_desc", _Handle())
        _check(
            _lib().dnnl_memory_desc_create_with_strides(
                ctypes.byref(md), t.dim(), _Dims(*t.shape), _F32, _Dims(*t.stride())
            ),
            f"memory descriptor {tuple(t.shape)} strides {t.stride()}",
        )
        return md

    def _memory(self, md: _Handle, pointer: int) -> _Handle:
        memory = self._owned.add("memory", _Handle())
        engine, _ = _engine_and_stream()
        _check(
            _lib().dnnl_memory_create(ctypes.byref(memory), md, engine, _Handle(pointer)),
            "dnnl_memory_create",
        )
        return memory

    def _reorder_weight(self, weight: Tensor, packed_md: _Handle) -> None:
        lib, (engine, stream) = _lib(), _engine_and_stream()
        plain = weight.detach()
        plain_md = self._desc(plain)
        reorder_pd, primitive = _Handle(), _Handle()
        try:
            _check(
                lib.dnnl_reorder_primitive_desc_create(
                    ctypes.byref(reorder_pd), plain_md, engine, packed_md, engine, None
                ),
                "weight reorder",
            )
            _check(lib.dnnl_primitive_create(ctypes.byref(primitive), reorder_pd), "reorder")
            source = self._memory(plain_md, plain.data_ptr())
            target = self._memory(packed_md, self._packed.data_ptr())
            args = (_ExecArg * 2)(_ExecArg(_ARG_SRC, source), _ExecArg(_ARG_DST, target))
            _check(lib.dnnl_primitive_execute(primitive, stream, 2, args), "weight reorder")
            _check(lib.dnnl_stream_wait(stream), "dnnl_stream_wait")
        finally:  # needed only for this one reorder
            _destroy(lib, [("primitive_desc", reorder_pd), ("primitive", primitive)])


def _storage(size_bytes: int) -> Tensor:
    """Float32 storage of at least ``size_bytes`` (one element when none is needed), 64-byte
    aligned as oneDNN prefers (PyTorch's CPU allocator aligns to 64 bytes)."""
    return torch.empty(max(1, -(-size_bytes // 4)), dtype=torch.float32)
