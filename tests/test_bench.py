"""The benchmark, run tiny: sections, contenders (optional ones skipped with a reason),
memory in a fresh process, reports (the measuring tools are tested in test_measure.py)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch
import torchvision

import densenet_edu as de
from densenet_edu import bench, bench_report, contenders, measure

TINY = dict(growth_rate=4, block_config=(2, 2), num_init_features=8, num_classes=5)
OPTIONAL = ("onnx", "onnxruntime", "openvino", "timm")


def tiny_models(device):  # the machinery, not DenseNet-121's speed, is under test here
    torch.manual_seed(0)
    theirs = torchvision.models.DenseNet(**TINY)
    measure.calibrate_batchnorm(theirs, torch.randn(4, 3, 32, 32))
    return theirs.eval(), de.load_torchvision_weights(de.DenseNet(**TINY), theirs).eval()


@pytest.fixture
def without_optional_packages(monkeypatch):
    for name in OPTIONAL:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ImportError


def test_quick_run_writes_markdown_and_json_with_ratios(
    tmp_path, monkeypatch, without_optional_packages
):
    monkeypatch.setattr(bench, "_models_121", tiny_models)
    cfg = bench.BenchConfig.quick()
    cfg.image_size, cfg.cifar_batch, cfg.cifar_depth, cfg.eval_repeats = 32, 2, 16, 1
    cfg.sections = ("eval_b1", "memory")
    results, info = bench.run(cfg)
    bench.write_report(results, info, tmp_path, "smoke")
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert data["machine"]["threads"] == torch.get_num_threads()
    rows = {(r["section"], r["name"]): r for r in data["results"]}
    assert rows[("eval_b1", "torchvision eager")]["vs_torchvision"] == 1.0
    assert rows[("eval_b1", "densenet_edu fast")]["vs_torchvision"] > 0
    assert rows[("memory", "densenet_edu memory_efficient")]["saved_bytes"] > 0
    table = (tmp_path / "smoke.md").read_text()
    assert "| densenet_edu fast |" in table and "Peak training-step memory" in table


def test_a_missing_package_skips_its_contender_with_the_reason(tmp_path, without_optional_packages):
    theirs, ours = tiny_models("cpu")
    runners, skipped = contenders.build_contenders(theirs, ours, tmp_path, 32)
    assert set(skipped) == {"onnxruntime", "openvino", "timm channels_last"}
    assert all('pip install "densenet-edu[bench]"' in why for why in skipped.values())
    assert {"torchvision eager", "densenet_edu fast"} <= set(runners)


def test_skipped_contenders_are_listed_in_the_report(
    tmp_path, monkeypatch, without_optional_packages
):
    monkeypatch.setattr(bench, "_models_121", tiny_models)
    cfg = bench.BenchConfig.quick()
    cfg.image_size, cfg.eval_repeats, cfg.sections = 32, 1, ("eval_b1",)
    results, info = bench.run(cfg)
    table = bench.markdown_table(results, info)
    assert "| openvino | skipped: openvino is not installed" in table


def test_every_timed_row_reports_error_gflops_and_share_of_peak(
    monkeypatch, without_optional_packages
):
    monkeypatch.setattr(bench, "_models_121", tiny_models)
    cfg = bench.BenchConfig.quick()
    cfg.image_size = 32
    results = bench.bench_eval(cfg, 2, "eval_b1", 1, 0)
    peak = next(r for r in results if r.name == bench.PEAK)  # timed in the same rounds
    assert peak.gflops > 0 and cfg.peak_gflops == peak.gflops
    rows = [r for r in results if r.seconds is not None]
    macs = de.count_macs(tiny_models("cpu")[1], (1, 3, 32, 32))
    for r in rows:
        assert r.rel_error is not None and r.rel_error < 1e-4, r.name
        assert r.gflops == pytest.approx(2 * macs * 2 / r.seconds / 1e9)
        assert r.peak_fraction == pytest.approx(r.gflops / peak.gflops)


INFO = {"processor": "cpu", "device": "cpu", "torch": "x", "threads": 2, "date": "d"}


def _timed_row(name, times):
    median = sorted(times)[len(times) // 2]
    return bench.Result("eval_b1", name, 1, seconds=median, times=times, images_per_s=1.0,
                        gflops=1.0, peak_fraction=0.5, rel_error=0.0)  # fmt: skip


def _line_of(table, name):
    return next(line for line in table.splitlines() if line.startswith(f"| {name} |"))


def test_the_speedup_over_a_contender_shows_the_middle_half_of_its_round_ratios():
    fast = _timed_row("densenet_edu fast", [0.1] * 5)
    other = _timed_row("openvino", [0.12, 0.08, 0.11, 0.09, 0.10])  # ratios 1.2, 0.8, 1.1, ...
    table = bench.markdown_table([fast, other], INFO)
    assert "| 1.00x (0.90-1.10) |" in _line_of(table, "openvino")
    assert "| 1.00x |" in _line_of(table, "densenet_edu fast")  # no range against itself


def test_a_run_with_few_rounds_reports_the_speedup_without_a_range():
    fast, other = _timed_row("densenet_edu fast", [0.1] * 3), _timed_row("onnxruntime", [0.2] * 3)
    line = _line_of(bench.markdown_table([fast, other], INFO), "onnxruntime")
    assert "| 2.00x |" in line and "(" not in line


def test_a_written_report_reads_back_to_the_same_table(tmp_path):
    results = [
        _timed_row("densenet_edu fast", [0.1] * 5),
        _timed_row("timm", [0.3, 0.2, 0.3, 0.2, 0.25]),  # five paired rounds: a range
    ]
    bench.write_report(results, INFO, tmp_path, "run")
    read = bench_report.read_report(tmp_path / "run.json")
    assert bench.markdown_table(*read) == (tmp_path / "run.md").read_text()


@pytest.mark.skipif(
    any(importlib.util.find_spec(n) is None for n in OPTIONAL),
    reason='the bench extra is not installed (pip install "densenet-edu[bench]")',
)
def test_onnxruntime_and_openvino_compute_what_torchvision_computes(tmp_path):
    theirs, ours = tiny_models("cpu")
    runners, skipped = contenders.build_contenders(theirs, ours, tmp_path, 32)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = theirs(x)
        for name in ("onnxruntime", "openvino"):
            assert contenders.relative_error(runners[name](x), expected) < 1e-4, name
    assert "timm channels_last" in skipped  # timm has no DenseNet of this tiny shape


def test_the_benchmark_reports_saved_bytes_with_the_shared_definition():
    """`saved_bytes` is densenet_edu.measure's figure: one definition in the book and here."""
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    model = de.densenet_cifar(16, 12, memory_efficient=True)
    figures = bench.measure_training_memory(True, batch=2, device="cpu", depth=16)
    assert figures["saved_bytes"] == measure.saved_tensor_bytes(model, x)


def test_the_report_says_which_route_the_fast_models_dense_blocks_took(monkeypatch):
    monkeypatch.setenv("DENSENET_EDU_ONEDNN_PRIMITIVES", "0")
    info = bench_report.machine_info("cpu")
    assert info["fast_dense_blocks"].startswith("ATen operators (switched off")
    table = bench.markdown_table([_timed_row("densenet_edu fast", [0.1] * 3)], info)
    assert "Fast model's dense blocks: ATen operators" in table.splitlines()[0]
