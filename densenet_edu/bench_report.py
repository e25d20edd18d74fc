"""The benchmark's results and their report: one Markdown table per section, and JSON.

:mod:`densenet_edu.bench` measures; this module describes the machine and writes what was
measured (``benchmarks/results_*.md`` / ``.json``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from densenet_edu import onednn_primitives
from densenet_edu.measure import round_ratio_quartiles

__all__ = [
    "SECTION_TITLES",
    "Result",
    "machine_info",
    "markdown_table",
    "read_report",
    "write_report",
]


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
    rel_error: float | None = None  # max |out - torchvision eager| / max |torchvision eager|
    gflops: float | None = None  # 2 x multiply-adds per image x images / second, in 1e9
    peak_fraction: float | None = None  # gflops / the machine's measured matmul GFLOP/s
    top1: float | None = None  # precision section: share of images with float32's best class
    top5: float | None = None  # ... and with float32's five best classes (as a set)
    note: str = ""


# --- report --------------------------------------------------------------------------

SECTION_TITLES = {
    "eval_b1": "Inference latency, DenseNet-121",
    "eval_b16": "Inference throughput, DenseNet-121",
    "train_121": "Training step, DenseNet-121",
    "train_cifar": "Training step, CIFAR DenseNet-BC (L=100, k=12)",
    "memory": "Peak training-step memory, CIFAR DenseNet-BC (L=100, k=12)",
    "precision": "Reduced precision, DenseNet-121 on natural images",
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
    for name in ("onnxruntime", "openvino", "timm"):  # the `bench` extra's contenders
        try:
            info[name] = importlib.import_module(name).__version__
        except ImportError:
            info[name] = "not installed"
    info["fast_dense_blocks"] = _fast_block_route()
    # How busy the machine was (1-minute load average vs cores): timings depend on it.
    info["load_average"] = round(os.getloadavg()[0], 2)
    info["cpus"] = os.cpu_count()
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _fast_block_route() -> str:
    """How the fast model's dense blocks ran: through oneDNN's C API, or ATen and why."""
    reason = onednn_primitives.unavailable_reason()
    if reason:
        return f"ATen operators ({reason})"
    version = importlib.metadata.version(onednn_primitives.DISTRIBUTION)
    return f"oneDNN primitives ({onednn_primitives.DISTRIBUTION} {version})"


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
        f"{info['threads']} thread(s), {info['date']}; load average "
        f"{info.get('load_average', '?')} on {info.get('cpus', '?')} CPUs at the end; "
        f"onnxruntime {info.get('onnxruntime', '?')}, openvino {info.get('openvino', '?')}, "
        f"timm {info.get('timm', '?')}."
        + (  # recorded since the blocks could take either route
            f" Fast model's dense blocks: {info['fast_dense_blocks']}."
            if "fast_dense_blocks" in info
            else ""
        ),
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
            lines += _eval_rows(rows, info)
        elif section == "precision":
            lines += _precision_rows(rows)
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


def _precision_rows(rows: list[Result]) -> list[str]:
    """Speed next to agreement with float32: no speed figure without its accuracy cost."""
    lines = [
        "| variant | median ms / batch | images/s | vs torchvision float32 | max rel. error "
        "| top-1 agreement | top-5 agreement |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.seconds is None:
            lines.append(f"| {r.name} | {r.note} | | | | | |")
            continue
        lines.append(
            f"| {r.name} | {r.seconds * 1e3:.1f} | {r.images_per_s:.1f} "
            f"| {_fmt_ratio(r.vs_torchvision)} | {r.rel_error:.1e} | {r.top1:.0%} | {r.top5:.0%} |"
        )
    return lines


def _eval_rows(rows: list[Result], info: dict[str, Any]) -> list[str]:
    """Inference table: time, speed-ups, GFLOP/s and share of the measured peak, agreement."""
    fast = next((r for r in rows if r.name == "densenet_edu fast" and r.seconds), None)
    lines = [
        "| contender | median ms / batch | images/s | vs torchvision | vs torchvision "
        "channels_last | fast's speed-up over it (middle half of rounds) | GFLOP/s | of peak "
        "| max rel. error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.note == "peak":  # the machine's matmul, timed in the same rounds
            lines.append(f"| {r.name} | | | | | | {r.gflops:.1f} | 100% | |")
            continue
        if r.seconds is None:
            lines.append(f"| {r.name} | {r.note} | | | | | | | |")
            continue
        over = _speedup_over(r, fast) if fast else ""
        peak = f"{r.peak_fraction:.0%}" if r.peak_fraction is not None else ""
        error = f"{r.rel_error:.1e}" if r.rel_error is not None else ""
        lines.append(
            f"| {r.name} | {r.seconds * 1e3:.1f} | {r.images_per_s:.1f} "
            f"| {_fmt_ratio(r.vs_torchvision)} | {_fmt_ratio(r.vs_torchvision_cl)} | {over} "
            f"| {r.gflops:.1f} | {peak} | {error} |"
        )
    return lines


def _speedup_over(row: Result, fast: Result) -> str:
    """``1.03x (0.89-1.11)``: the ratio of the medians, then the middle half of the per-round
    ratios when both rows kept their rounds (a range that straddles 1.00x is a tie)."""
    ratio = _fmt_ratio(row.seconds / fast.seconds)
    if row is fast or len(row.times) < 4 or len(row.times) != len(fast.times):
        return ratio
    lower, _, upper = round_ratio_quartiles(row.times, fast.times)
    return f"{ratio} ({lower:.2f}-{upper:.2f})"


def write_report(results: list[Result], info: dict[str, Any], out_dir: Path, stem: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.md").write_text(markdown_table(results, info))
    payload = {"machine": info, "results": [asdict(r) for r in results]}
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=1) + "\n")


def read_report(path: Path) -> tuple[list[Result], dict[str, Any]]:
    """The results and machine description saved by :func:`write_report` (its JSON file),
    e.g. to write a recorded run's table again: ``markdown_table(*read_report(path))``."""
    payload = json.loads(Path(path).read_text())
    return [Result(**row) for row in payload["results"]], payload["machine"]
