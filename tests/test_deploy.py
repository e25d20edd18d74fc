"""export_onnx: the file computes what the model computes, for any batch; clear errors otherwise."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch
import torchvision
from torch import nn

import densenet_edu as de
from densenet_edu import deploy
from densenet_edu.deploy import OnnxCheckError, export_onnx

TINY = dict(growth_rate=4, block_config=(2, 2), num_init_features=8, num_classes=5)


def tiny_densenet(seed: int = 0) -> de.DenseNet:
    """A two-block DenseNet with random, non-trivial BatchNorm statistics (exports in seconds)."""
    torch.manual_seed(seed)
    model = de.DenseNet(**TINY)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


def run_in_onnxruntime(path, x: torch.Tensor) -> torch.Tensor:
    session = deploy.onnxruntime_session(path)
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


# --- round trips (need onnx, onnxscript and onnxruntime: the `bench` extra) -----------

needs_onnx = pytest.mark.skipif(
    any(importlib.util.find_spec(n) is None for n in ("onnx", "onnxruntime")),
    reason='onnx / onnxruntime not installed (pip install "densenet-edu[bench]")',
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_densenet()
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", image_size=32)
    return model, path


@needs_onnx
@pytest.mark.parametrize("batch", [1, 4])
def test_exported_file_computes_the_model_for_any_batch_size(exported, batch):
    model, path = exported
    x = torch.randn(batch, 3, 32, 32)
    with torch.no_grad():
        assert relative_error(run_in_onnxruntime(path, x), model(x)) < 1e-4


@needs_onnx
@pytest.mark.parametrize("spinning", [True, False])
def test_a_session_can_let_its_idle_threads_sleep_and_computes_the_same(exported, spinning):
    model, path = exported
    session = deploy.onnxruntime_session(path, spinning=spinning)
    entry = session.get_session_options().get_session_config_entry
    if not spinning:
        assert entry("session.intra_op.allow_spinning") == "0"
    x = torch.randn(2, 3, 32, 32)
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    assert relative_error(got, model(x)) < 1e-4


@needs_onnx
def test_exported_file_declares_a_symbolic_batch_and_the_chosen_opset(exported):
    import onnx

    _, path = exported
    graph = onnx.load(str(path))
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 32, 32]
    opsets = {o.domain: o.version for o in graph.opset_import}
    assert opsets[""] == deploy.DEFAULT_OPSET


@needs_onnx
def test_fast_model_exports_to_the_same_function(tmp_path):
    model = tiny_densenet()
    path = export_onnx(de.optimize_for_inference(model), tmp_path / "fast.onnx", image_size=32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert relative_error(run_in_onnxruntime(path, x), model(x)) < 1e-4


@needs_onnx
def test_export_leaves_a_training_model_in_training_mode(tmp_path):
    model = tiny_densenet().train()
    export_onnx(model, tmp_path / "m.onnx", image_size=32, check=False)
    assert model.training


@needs_onnx
def test_check_fails_loudly_when_the_file_computes_something_else(exported):
    _, path = exported
    other = tiny_densenet(seed=1)  # same architecture, other weights
    with pytest.raises(OnnxCheckError, match="relative error"):
        deploy._compare_with_onnxruntime(other, path, torch.randn(2, 3, 32, 32))


# --- error paths (no export runs: they fail before it) --------------------------------


OPTIONAL = ["onnx", "onnxscript", "onnxruntime"]


def _pretend_installed(monkeypatch, names):
    """Stand-ins for optional packages this machine may lack (a fresh CI has none of them)."""
    for name in names:
        if importlib.util.find_spec(name) is None:
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))


@pytest.mark.parametrize("missing", OPTIONAL)
def test_a_missing_package_names_the_extra_to_install(tmp_path, monkeypatch, missing):
    _pretend_installed(monkeypatch, [name for name in OPTIONAL if name != missing])
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` now raises ImportError
    with pytest.raises(ImportError, match=rf"{missing} is needed.*densenet-edu\[bench\]"):
        export_onnx(tiny_densenet(), tmp_path / "m.onnx")


def test_onnxruntime_is_not_needed_without_the_check(tmp_path, monkeypatch):
    _pretend_installed(monkeypatch, ["onnx", "onnxscript"])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: None)  # the export itself
    assert export_onnx(tiny_densenet(), tmp_path / "m.onnx", check=False) == tmp_path / "m.onnx"


def test_a_path_in_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_onnx(tiny_densenet(), tmp_path / "no" / "such" / "m.onnx")


def test_a_folder_as_path_is_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="folder"):
        export_onnx(tiny_densenet(), tmp_path)


@pytest.mark.parametrize(
    "not_a_densenet",
    [nn.Linear(3, 4), torchvision.models.resnet18(), "densenet121"],
    ids=["linear", "resnet", "string"],
)
def test_something_that_is_not_a_densenet_is_refused(tmp_path, not_a_densenet):
    with pytest.raises(TypeError, match="export_onnx expects a DenseNet"):
        export_onnx(not_a_densenet, tmp_path / "m.onnx")


def test_export_onnx_is_exported_from_the_package():
    assert de.export_onnx is export_onnx
