"""The benchmark, run tiny: sections, memory in a fresh process, reports (the measuring
tools themselves are tested in test_measure.py)."""

from __future__ import annotations

import json

import torch
import torchvision

import densenet_edu as de
from densenet_edu import bench, measure


def test_quick_run_writes_markdown_and_json_with_ratios(tmp_path, monkeypatch):
    def tiny_models(device):  # the machinery, not DenseNet-121's speed, is under test here
        config = dict(growth_rate=4, block_config=(2, 2), num_init_features=8, num_classes=5)
        theirs = torchvision.models.DenseNet(**config).eval()
        return theirs, de.load_torchvision_weights(de.DenseNet(**config), theirs).eval()

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


def test_the_benchmark_reports_saved_bytes_with_the_shared_definition():
    """`saved_bytes` is densenet_edu.measure's figure: one definition in the book and here."""
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    model = de.densenet_cifar(16, 12, memory_efficient=True)
    figures = bench.measure_training_memory(True, batch=2, device="cpu", depth=16)
    assert figures["saved_bytes"] == measure.saved_tensor_bytes(model, x)
