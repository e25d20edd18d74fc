"""The benchmark machinery, run tiny: interleaved timing, memory in a fresh process, reports."""

from __future__ import annotations

import json

import torch
import torchvision
from torch import nn

import densenet_edu as de
from densenet_edu import bench


def test_interleaved_timing_alternates_rotates_and_skips_warmup():
    calls: list[str] = []
    contenders = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = bench.time_interleaved(contenders, repeats=2, warmup=1)
    # 1 warm-up round + 2 timed rounds; each round starts one contender later.
    assert calls == list("abc" + "bca" + "cab")
    assert {name: len(t) for name, t in times.items()} == {"a": 2, "b": 2, "c": 2}


def test_calibrated_batchnorm_statistics_are_the_batch_statistics():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    x = torch.randn(8, 3, 5, 5)
    bench.calibrate_batchnorm(model, x)
    with torch.no_grad():
        y = model[0](x)
    torch.testing.assert_close(model[1].running_mean, y.mean(dim=(0, 2, 3)))
    assert not model.training


def test_memory_efficient_saves_fewer_bytes_for_backward():
    x = torch.randn(2, 3, 32, 32)
    plain = de.densenet_cifar(depth=22, growth_rate=6)
    efficient = de.densenet_cifar(depth=22, growth_rate=6, memory_efficient=True)
    assert bench.saved_tensor_bytes(efficient, x) < bench.saved_tensor_bytes(plain, x)


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
