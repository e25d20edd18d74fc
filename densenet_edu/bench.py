"""Benchmark densenet_edu against torchvision's DenseNet: speed and training memory.

Run ``python -m densenet_edu.bench --help``. Every contender in a section runs on the
same machine in the same process, interleaved (A, B, C, A, B, C, ...) so that a change in
machine load hits all of them alike, and we report the median of the timed repeats after
warm-up runs. All contenders share one set of (random) weights, with BatchNorm statistics
calibrated on random images so that activations have realistic scales.

Sections:

* ``eval_b1`` / ``eval_b16``: DenseNet-121 inference at 224x224, batch 1 (latency) and
  batch 16 (throughput): torchvision eager and channels_last, densenet_edu eager and its
  fast path (:func:`densenet_edu.fast.optimize_for_inference`), torch.jit's
  optimize_for_inference, and, when the ``bench`` extra is installed, timm, ONNX Runtime
  and OpenVINO (:mod:`densenet_edu.contenders`; ``--compile`` adds inductor). Each row
  also gives the maximum relative error against torchvision eager, GFLOP/s (2 x
  multiply-adds per image) and the fraction of the machine's measured fp32 peak (the
  faster of two 2048x2048 GEMMs, :func:`densenet_edu.measure.gemm_calls`, same run).
* ``train_121``: one SGD step (forward, loss, backward, update) of DenseNet-121, batch 16.
* ``train_cifar``: one SGD step of CIFAR DenseNet-BC (L=100, k=12), batch 64, plain vs
  ``memory_efficient=True``.
* ``memory``: peak memory of that CIFAR training step, plain vs memory-efficient. On CPU
  each configuration runs in a *fresh* Python process, which reports how far its
  resident anonymous memory (sampled every millisecond) rises during one training step;
  on CUDA the caching allocator's peak (``torch.cuda.max_memory_allocated``). Both also
  report the bytes saved for backward: distinct storages, parameters and buffers
  excluded, exact and independent of the allocator.

The definitions of these quantities (median time, peak memory growth, saved for
backward) and the tools that measure them live in :mod:`densenet_edu.measure`, shared
with the book.

On a GPU the eval and training sections add autocast (bfloat16 / float16) variants.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import densenet_edu as de
from densenet_edu.analysis import count_macs
from densenet_edu.bench_cifar import bench_memory, cifar_model, measure_training_memory
from densenet_edu.bench_report import (
    SECTION_TITLES,
    Result,
    machine_info,
    markdown_table,
    write_report,
)
from densenet_edu.contenders import Runner, build_contenders, relative_error
from densenet_edu.measure import (
    calibrate_batchnorm,
    gemm_calls,
    make_train_step,
    medians,
    time_interleaved,
)
from densenet_edu.precision import agreement, natural_images, precision_contenders

__all__ = [
    "BenchConfig",
    "Result",
    "main",
    "markdown_table",
    "measure_training_memory",
    "run",
    "write_report",
]


#: The eval sections time fp32 GEMMs of this size in the same rounds as the models, one per
#: library (measure.gemm_calls); the faster is the machine's practical peak under that load.
PEAK_N = 2048
PEAK = f"fp32 GEMM {PEAK_N}x{PEAK_N}, faster of torch.mm and oneDNN (the peak)"


@dataclass
class BenchConfig:
    """What to measure and how often. ``quick`` is a smoke run, ``full`` the recorded one."""

    device: str = "cpu"
    eval_repeats: int = 15  # batch 1
    eval_warmup: int = 2
    throughput_repeats: int = 5  # batch ``eval_batch``
    throughput_warmup: int = 1
    train_repeats: int = 3
    train_warmup: int = 1
    image_size: int = 224
    cifar_batch: int = 64
    cifar_depth: int = 100
    eval_batch: int = 16
    train_batch: int = 16
    compile: bool = False
    peak_gflops: float | None = None  # highest matmul GFLOP/s of the eval sections
    sections: tuple[str, ...] = (
        "eval_b1",
        "eval_b16",
        "train_121",
        "train_cifar",
        "memory",
        "precision",
    )

    @classmethod
    def quick(cls, device: str = "cpu") -> BenchConfig:
        return cls(
            device=device,
            eval_repeats=2,
            eval_warmup=1,
            throughput_repeats=1,
            throughput_warmup=1,
            train_repeats=1,
            train_warmup=1,
            image_size=64,
            cifar_batch=8,
            eval_batch=4,
            train_batch=4,
        )


# --- models --------------------------------------------------------------------------


def _models_121(device: torch.device) -> tuple[nn.Module, nn.Module]:
    """torchvision and densenet_edu DenseNet-121 with the same calibrated weights."""
    import torchvision

    theirs = torchvision.models.densenet121()
    calibrate_batchnorm(theirs, torch.randn(4, 3, 64, 64))
    ours = de.load_torchvision_weights(de.densenet121(), theirs)
    return theirs.to(device).eval(), ours.to(device).eval()


def _channels_last(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).to(memory_format=torch.channels_last)


# --- sections ------------------------------------------------------------------------


def bench_eval(
    cfg: BenchConfig, batch: int, section: str, repeats: int, warmup: int
) -> list[Result]:
    """DenseNet-121 inference: median seconds per batch and agreement for every contender.

    Contenders: :func:`densenet_edu.contenders.build_contenders` (the optional ones are
    skipped with a printed reason when their package is missing). Each one's output on
    the timed batch is compared with torchvision eager's before timing.
    """
    device = torch.device(cfg.device)
    theirs, ours = _models_121(device)
    x = torch.randn(batch, 3, cfg.image_size, cfg.image_size, device=device)
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        runs, skipped = build_contenders(
            theirs, ours, Path(folder), cfg.image_size, compile=cfg.compile
        )
        if device.type == "cuda":
            fast, theirs_cl = runs["densenet_edu fast"], runs["torchvision channels_last"]
            for dtype in (torch.bfloat16, torch.float16):
                short = str(dtype).removeprefix("torch.")
                runs[f"torchvision channels_last autocast {short}"] = _autocast(
                    device, dtype, theirs_cl
                )
                runs[f"densenet_edu fast autocast {short}"] = _autocast(device, dtype, fast)
        reference = theirs(x)
        errors = {name: relative_error(run(x), reference) for name, run in runs.items()}
        calls = {name: (lambda run=run: run(x)) for name, run in runs.items()}
        # The machine's fp32 peak, timed in the same rounds: the same load as the models.
        gemms = {f"{PEAK}: {lib}": call for lib, call in gemm_calls(PEAK_N, device).items()}
        calls.update(gemms)
        times = time_interleaved(
            calls,
            repeats,
            warmup,
            device,
            desc=f"{section} (batch {batch})",
            settle=_settle(device),
        )
    peak_gflops = max(2 * PEAK_N**3 / statistics.median(times.pop(name)) / 1e9 for name in gemms)
    cfg.peak_gflops = max(cfg.peak_gflops or 0.0, peak_gflops)
    results = _results(section, batch, times)
    macs = count_macs(ours, (1, 3, cfg.image_size, cfg.image_size))
    for r in results:
        r.rel_error = errors[r.name]
        r.gflops = 2 * macs * batch / r.seconds / 1e9
        r.peak_fraction = r.gflops / peak_gflops
    results.append(Result(section, PEAK, batch, gflops=peak_gflops, peak_fraction=1.0, note="peak"))
    results += [
        Result(section, name, batch, note=f"skipped: {why}") for name, why in skipped.items()
    ]
    return results


def _settle(device: torch.device) -> int:
    """Untimed calls before each timed one: on a CPU, the engines' thread pools need one."""
    return 1 if device.type == "cpu" else 0


def bench_precision(cfg: BenchConfig) -> list[Result]:
    """float32 vs bfloat16 vs int8 on natural images: time and agreement with float32.

    See :mod:`densenet_edu.precision`. The batch is the sample photographs at two crops.
    """
    device = torch.device(cfg.device)
    theirs, ours = _models_121(device)
    x = natural_images(cfg.image_size).to(device)
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        runs, skipped = precision_contenders(theirs, ours, Path(folder), cfg.image_size)
        reference = theirs(x)
        agree = {name: agreement(run(x), reference) for name, run in runs.items()}
        calls = {name: (lambda run=run: run(x)) for name, run in runs.items()}
        times = time_interleaved(
            calls,
            cfg.throughput_repeats,
            cfg.throughput_warmup,
            device,
            desc="precision",
            settle=_settle(device),
        )
    results = _results("precision", len(x), times, reference="torchvision eager float32")
    for r in results:
        r.rel_error, r.top1, r.top5 = (agree[r.name][k] for k in ("rel_error", "top1", "top5"))
        r.vs_torchvision = 1 / r.vs_reference if r.vs_reference else None
    results += [
        Result("precision", name, len(x), note=f"skipped: {why}") for name, why in skipped.items()
    ]
    return results


def _autocast(device: torch.device, dtype: torch.dtype, fn: Runner) -> Runner:
    def run(x: torch.Tensor) -> Any:
        with torch.autocast(device.type, dtype=dtype):
            return fn(x)

    return run


def bench_train_121(cfg: BenchConfig) -> list[Result]:
    """One SGD step of DenseNet-121: torchvision vs densenet_edu, plain and memory-efficient."""
    device = torch.device(cfg.device)
    theirs, ours = _models_121(device)
    n = cfg.train_batch
    x = torch.randn(n, 3, cfg.image_size, cfg.image_size, device=device)
    y = torch.randint(0, 1000, (n,), device=device)
    runs = {
        "torchvision eager": make_train_step(theirs, x, y),
        "densenet_edu eager": make_train_step(ours, x, y),
    }
    if device.type == "cuda":  # on CPU the CIFAR section measures memory_efficient
        ours_me = copy.deepcopy(ours)
        _set_memory_efficient(ours_me, True)
        runs["densenet_edu memory_efficient"] = make_train_step(ours_me, x, y)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        runs["torchvision channels_last autocast bfloat16"] = make_train_step(
            _channels_last(theirs), x_cl, y, torch.bfloat16
        )
        runs["densenet_edu channels_last autocast bfloat16"] = make_train_step(
            _channels_last(ours), x_cl, y, torch.bfloat16
        )
    times = time_interleaved(
        runs, cfg.train_repeats, cfg.train_warmup, device, desc=f"train DenseNet-121 (batch {n})"
    )
    return _results("train_121", n, times)


def bench_train_cifar(cfg: BenchConfig) -> list[Result]:
    """One SGD step of CIFAR DenseNet-BC (L=100, k=12): plain vs memory-efficient."""
    device = torch.device(cfg.device)
    n = cfg.cifar_batch
    x = torch.randn(n, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (n,), device=device)
    runs = {
        "densenet_edu eager": make_train_step(cifar_model(False, device, cfg.cifar_depth), x, y),
        "densenet_edu memory_efficient": make_train_step(
            cifar_model(True, device, cfg.cifar_depth), x, y
        ),
    }
    times = time_interleaved(
        runs, cfg.train_repeats, cfg.train_warmup, device, desc=f"train DenseNet-BC-100 (batch {n})"
    )
    results = _results("train_cifar", n, times, reference="densenet_edu eager")
    return results


def _set_memory_efficient(model: nn.Module, on: bool) -> None:
    for m in model.modules():
        if isinstance(m, de.DenseLayer):
            m.memory_efficient = on


def _results(
    section: str,
    batch: int,
    times: dict[str, list[float]],
    reference: str | None = None,
) -> list[Result]:
    median = medians(times)
    tv = median.get("torchvision eager")
    tv_cl = median.get("torchvision channels_last")
    ref = median.get(reference) if reference else None
    return [
        Result(
            section,
            name,
            batch,
            seconds=m,
            times=times[name],
            images_per_s=batch / m,
            vs_torchvision=tv / m if tv else None,
            vs_torchvision_cl=tv_cl / m if tv_cl else None,
            vs_reference=m / ref if ref else None,
        )
        for name, m in median.items()
    ]


def run(cfg: BenchConfig) -> tuple[list[Result], dict[str, Any]]:
    """Run the selected sections and return the results and the machine description."""
    results: list[Result] = []
    sections: dict[str, Callable[[], list[Result]]] = {
        "eval_b1": lambda: bench_eval(cfg, 1, "eval_b1", cfg.eval_repeats, cfg.eval_warmup),
        "eval_b16": lambda: bench_eval(
            cfg, cfg.eval_batch, "eval_b16", cfg.throughput_repeats, cfg.throughput_warmup
        ),
        "train_121": lambda: bench_train_121(cfg),
        "train_cifar": lambda: bench_train_cifar(cfg),
        "memory": lambda: bench_memory(cfg),
        "precision": lambda: bench_precision(cfg),
    }
    for name in cfg.sections:
        if name not in sections:
            raise ValueError(f"unknown section {name!r}; choose from {', '.join(sections)}")
        results += sections[name]()
    info = machine_info(cfg.device)
    info["peak_gflops"] = cfg.peak_gflops
    return results, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m densenet_edu.bench",
        description="Benchmark densenet_edu against torchvision (speed and memory).",
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks"), help="output folder")
    parser.add_argument("--name", default=None, help="file stem (default results_<device>)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=None, help="timed batch-1 eval repeats")
    parser.add_argument("--train-repeats", type=int, default=None, help="timed train repeats")
    parser.add_argument("--compile", action="store_true", help="add torch.compile variants")
    parser.add_argument("--sections", nargs="+", default=None, choices=list(SECTION_TITLES))
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = BenchConfig.quick(args.device) if args.quick else BenchConfig(device=args.device)
    if args.repeats is not None:
        cfg.eval_repeats = args.repeats
    if args.train_repeats is not None:
        cfg.train_repeats = args.train_repeats
    cfg.compile = args.compile
    if args.sections:
        cfg.sections = tuple(args.sections)
    torch.manual_seed(0)
    results, info = run(cfg)
    info["command"] = "python -m densenet_edu.bench " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    stem = args.name or f"results_{torch.device(args.device).type}"
    write_report(results, info, args.out, stem)
    print(markdown_table(results, info))
    print(f"wrote {args.out / (stem + '.md')} and {args.out / (stem + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
