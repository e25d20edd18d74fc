"""Benchmark densenet_edu against torchvision's DenseNet: speed and training memory.

Run ``python -m densenet_edu.bench --help``. Every contender in a section runs on the
same machine in the same process, interleaved (A, B, C, A, B, C, ...) so that a change in
machine load hits all of them alike, and we report the median of the timed repeats after
warm-up runs. All contenders share one set of (random) weights, with BatchNorm statistics
calibrated on random images so that activations have realistic scales.

Sections:

* ``eval_b1`` / ``eval_b16``: DenseNet-121 inference at 224x224, batch 1 (latency) and
  batch 16 (throughput): torchvision eager and channels_last, densenet_edu eager and its
  fast path (:func:`densenet_edu.fast.optimize_for_inference`), optionally torch.compile.
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
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import densenet_edu as de
from densenet_edu.fast import optimize_for_inference
from densenet_edu.measure import (
    calibrate_batchnorm,
    make_train_step,
    medians,
    peak_memory_growth,
    saved_tensor_bytes,
    time_interleaved,
)
from densenet_edu.progress import progress_bar

__all__ = [
    "BenchConfig",
    "Result",
    "main",
    "markdown_table",
    "measure_training_memory",
    "run",
    "write_report",
]


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
    sections: tuple[str, ...] = ("eval_b1", "eval_b16", "train_121", "train_cifar", "memory")

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


@dataclass
class Result:
    """One contender in one section. ``seconds`` is the median per call."""

    section: str
    name: str
    batch: int
    seconds: float | None = None
    times: list[float] = field(default_factory=list)
    images_per_s: float | None = None
    vs_torchvision: float | None = None  # speed-up over torchvision eager (>1 is faster)
    vs_torchvision_cl: float | None = None  # speed-up over torchvision channels_last
    vs_reference: float | None = None  # time relative to the section's reference (<1 faster)
    peak_bytes: int | None = None
    saved_bytes: int | None = None
    note: str = ""


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


def _compile(model: nn.Module) -> nn.Module:
    return torch.compile(model, fullgraph=True)


# --- sections ------------------------------------------------------------------------


def bench_eval(
    cfg: BenchConfig, batch: int, section: str, repeats: int, warmup: int
) -> list[Result]:
    """DenseNet-121 inference: median seconds per batch for every contender."""
    device = torch.device(cfg.device)
    theirs, ours = _models_121(device)
    theirs_cl = _channels_last(theirs)
    x = torch.randn(batch, 3, cfg.image_size, cfg.image_size, device=device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    fast = optimize_for_inference(ours)
    runs: dict[str, Callable[[], Any]] = {
        "torchvision eager": lambda: theirs(x),
        "torchvision channels_last": lambda: theirs_cl(x_cl),
        "densenet_edu eager": lambda: ours(x),
        "densenet_edu fast": lambda: fast(x),
    }
    if device.type == "cuda":
        for dtype in (torch.bfloat16, torch.float16):
            short = str(dtype).removeprefix("torch.")
            runs[f"torchvision channels_last autocast {short}"] = _autocast(
                device, dtype, lambda: theirs_cl(x_cl)
            )
            runs[f"densenet_edu fast autocast {short}"] = _autocast(device, dtype, lambda: fast(x))
    if cfg.compile:
        compiled_tv = _compile(theirs_cl)
        compiled_fast = _compile(fast)
        runs["torchvision channels_last compiled"] = lambda: compiled_tv(x_cl)
        runs["densenet_edu fast compiled"] = lambda: compiled_fast(x)
    with torch.inference_mode():
        times = time_interleaved(runs, repeats, warmup, device, desc=f"{section} (batch {batch})")
    return _results(section, batch, times)


def _autocast(device: torch.device, dtype: torch.dtype, fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with torch.autocast(device.type, dtype=dtype):
            return fn()

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


def _cifar_model(memory_efficient: bool, device: torch.device, depth: int = 100) -> nn.Module:
    torch.manual_seed(0)
    return de.densenet_cifar(depth, 12, memory_efficient=memory_efficient).to(device)


def bench_train_cifar(cfg: BenchConfig) -> list[Result]:
    """One SGD step of CIFAR DenseNet-BC (L=100, k=12): plain vs memory-efficient."""
    device = torch.device(cfg.device)
    n = cfg.cifar_batch
    x = torch.randn(n, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (n,), device=device)
    runs = {
        "densenet_edu eager": make_train_step(_cifar_model(False, device, cfg.cifar_depth), x, y),
        "densenet_edu memory_efficient": make_train_step(
            _cifar_model(True, device, cfg.cifar_depth), x, y
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


def measure_training_memory(
    memory_efficient: bool, batch: int, device: str, depth: int = 100
) -> dict[str, int]:
    """Peak memory of one CIFAR DenseNet-BC-100 training step, in this process.

    ``peak_bytes``: :func:`densenet_edu.measure.peak_memory_growth` of one training step,
    measured once the model, data, gradients and optimizer state exist, so it is the
    memory of activations and backward temporaries. On the CPU, run it in a fresh
    process (see :func:`bench_memory`) so that memory freed by earlier work in the
    process cannot be reused and hide the growth. ``saved_bytes``:
    :func:`densenet_edu.measure.saved_tensor_bytes` of the same forward pass.
    """
    dev = torch.device(device)
    model = _cifar_model(memory_efficient, dev, depth).train()
    x = torch.randn(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, nesterov=True)

    def step(n: int) -> None:
        # Gradients are zeroed, not freed, so the measured step allocates none of them.
        optimizer.zero_grad(set_to_none=False)
        F.cross_entropy(model(x[:n]), y[:n]).backward()
        optimizer.step()

    step(1)  # creates gradients and momentum buffers with a small peak
    peak = peak_memory_growth(lambda: step(batch), dev)
    saved = saved_tensor_bytes(model, x)
    return {"peak_bytes": int(peak), "saved_bytes": int(saved)}


def bench_memory(cfg: BenchConfig) -> list[Result]:
    """Peak training memory, plain vs memory-efficient, each in a fresh subprocess."""
    results = []
    for name, flag in progress_bar(
        [("densenet_edu eager", False), ("densenet_edu memory_efficient", True)],
        desc=f"memory (fresh process each, batch {cfg.cifar_batch})",
    ):
        code = (
            "import json, torch; from densenet_edu.bench import measure_training_memory; "
            f"torch.set_num_threads({torch.get_num_threads()}); "
            f"print(json.dumps(measure_training_memory({flag}, {cfg.cifar_batch}, "
            f"{cfg.device!r}, {cfg.cifar_depth})))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        results.append(Result("memory", name, cfg.cifar_batch, **figures))
    reference = results[0]
    for r in results:
        r.vs_reference = r.peak_bytes / reference.peak_bytes if reference.peak_bytes else None
    return results


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


# --- report --------------------------------------------------------------------------

SECTION_TITLES = {
    "eval_b1": "Inference latency, DenseNet-121",
    "eval_b16": "Inference throughput, DenseNet-121",
    "train_121": "Training step, DenseNet-121",
    "train_cifar": "Training step, CIFAR DenseNet-BC (L=100, k=12)",
    "memory": "Peak training-step memory, CIFAR DenseNet-BC (L=100, k=12)",
}


def machine_info(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover - torchvision is a dependency
        pass
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _fmt_ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else ""


def markdown_table(results: list[Result], info: dict[str, Any]) -> str:
    """The results as Markdown: one table per section, absolute figures and ratios."""
    lines = [
        f"Device: {info.get('gpu', info['processor'])} ({info['device']}), "
        f"torch {info['torch']}, torchvision {info.get('torchvision', '?')}, "
        f"{info['threads']} thread(s), {info['date']}.",
        "",
    ]
    for section, title in SECTION_TITLES.items():
        rows = [r for r in results if r.section == section]
        if not rows:
            continue
        lines += [f"### {title} (batch {rows[0].batch})", ""]
        if section == "memory":
            lines += [
                "| configuration | peak memory growth (MB) | saved for backward (MB) | vs plain |",
                "|---|---:|---:|---:|",
            ]
            for r in rows:
                lines.append(
                    f"| {r.name} | {r.peak_bytes / 2**20:.1f} | {r.saved_bytes / 2**20:.1f} "
                    f"| {_fmt_ratio(r.vs_reference)} |"
                )
        elif section.startswith("eval"):
            lines += [
                "| contender | median ms / batch | images/s | speed-up vs torchvision "
                "| vs torchvision channels_last |",
                "|---|---:|---:|---:|---:|",
            ]
            for r in rows:
                lines.append(
                    f"| {r.name} | {r.seconds * 1e3:.1f} | {r.images_per_s:.1f} "
                    f"| {_fmt_ratio(r.vs_torchvision)} | {_fmt_ratio(r.vs_torchvision_cl)} |"
                )
        else:
            ratio = "speed-up vs torchvision" if section == "train_121" else "time vs plain"
            lines += [
                f"| contender | median s / step | images/s | {ratio} |",
                "|---|---:|---:|---:|",
            ]
            for r in rows:
                value = r.vs_torchvision if section == "train_121" else r.vs_reference
                lines.append(
                    f"| {r.name} | {r.seconds:.3f} | {r.images_per_s:.1f} | {_fmt_ratio(value)} |"
                )
        lines.append("")
    return "\n".join(lines)


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
    }
    for name in cfg.sections:
        if name not in sections:
            raise ValueError(f"unknown section {name!r}; choose from {', '.join(sections)}")
        results += sections[name]()
    info = machine_info(cfg.device)
    try:
        import timm  # noqa: F401

        info["timm"] = "installed but not benchmarked"
    except ImportError:
        info["timm"] = "not installed (skipped)"
    return results, info


def write_report(results: list[Result], info: dict[str, Any], out_dir: Path, stem: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.md").write_text(markdown_table(results, info))
    payload = {"machine": info, "results": [asdict(r) for r in results]}
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=1) + "\n")


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
