"""Reduced precision is reported with its agreement with float32, on natural images."""

from __future__ import annotations

import sys

import pytest
import torch
import torchvision

import densenet_edu as de
from densenet_edu import bench, measure, precision

TINY = dict(growth_rate=4, block_config=(2, 2), num_init_features=8, num_classes=7)


def tiny_models(device):
    torch.manual_seed(0)
    theirs = torchvision.models.DenseNet(**TINY)
    measure.calibrate_batchnorm(theirs, torch.randn(4, 3, 32, 32))
    return theirs.eval(), de.load_torchvision_weights(de.DenseNet(**TINY), theirs).eval()


def test_identical_logits_agree_fully():
    logits = torch.randn(4, 10)
    assert precision.agreement(logits, logits) == {"rel_error": 0.0, "top1": 1.0, "top5": 1.0}


def test_swapping_the_two_best_classes_breaks_top1_but_not_top5():
    reference = torch.arange(10.0).repeat(4, 1)  # class 9 best, then 8, ...
    swapped = reference.clone()
    swapped[:2, [8, 9]] = swapped[:2, [9, 8]]  # two of four images change their best class
    result = precision.agreement(swapped, reference)
    assert result["top1"] == 0.5 and result["top5"] == 1.0
    assert result["rel_error"] == pytest.approx(1 / 9)


def test_a_class_leaving_the_top5_breaks_top5_agreement():
    reference = torch.arange(10.0).repeat(2, 1)
    changed = reference.clone()
    changed[0, 5] = -1.0  # the fifth best class of image 0 drops out
    assert precision.agreement(changed, reference)["top5"] == 0.5


def test_natural_images_are_the_sample_photos_at_each_crop():
    pytest.importorskip("skimage", reason="scikit-image not installed")
    x = precision.natural_images(32, crops=("center", "top-left"))
    assert x.shape == (2 * len(precision.PHOTOS), 3, 32, 32)
    assert not torch.equal(x[0], x[1])  # two crops of one photo differ
    # ImageNet normalisation: 0..1 pixels map into [-mean/std, (1-mean)/std].
    assert x.min() >= -0.485 / 0.229 - 1e-4 and x.max() <= (1 - 0.406) / 0.225 + 1e-4


def test_precision_section_reports_agreement_and_skips_without_onnxruntime(monkeypatch):
    pytest.importorskip("skimage", reason="scikit-image not installed")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setattr(bench, "_models_121", tiny_models)
    cfg = bench.BenchConfig.quick()
    cfg.image_size = 32
    rows = {r.name: r for r in bench.bench_precision(cfg)}
    bf16 = rows["densenet_edu fast bfloat16"]
    assert bf16.rel_error is not None and 0 < bf16.rel_error < 0.1
    assert bf16.top1 is not None and bf16.top5 is not None
    assert rows["torchvision eager float32"].rel_error == 0.0
    assert rows["onnxruntime int8 (static, QDQ)"].note.startswith("skipped: onnxruntime")
