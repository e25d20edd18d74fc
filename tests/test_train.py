"""Training: the recipe, logs, checkpoints, exact resumes, torchrun, and bad input."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import matplotlib
import pytest
import torch
from train_helpers import REPO, tiny, without_times

import densenet_edu as de
from densenet_edu.config import DenseNetConfig
from densenet_edu.errors import CheckpointError as CheckpointErrorHome
from densenet_edu.train import (
    CheckpointError,
    TrainConfig,
    TrainStep,
    build_model,
    load_checkpoint,
    load_model,
    main,
    milestone_epochs,
    plot_learning_curves,
    read_log,
    train,
)

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[TrainConfig, list[dict]]:
    """One uninterrupted 3-epoch run, shared by the tests that only read its results."""
    config = tiny(tmp_path_factory.mktemp("run") / "full")
    return config, train(config).history


# --- the recipe --------------------------------------------------------------------------


def test_defaults_are_the_papers_cifar_recipe():
    c = TrainConfig()
    assert (c.depth, c.growth_rate, c.bottleneck, c.compression) == (100, 12, True, 0.5)
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.nesterov) == (300, 64, 0.1, 0.9, True)
    assert c.weight_decay == 1e-4 and c.milestones == (0.5, 0.75) and c.gamma == 0.1


def papers_schedule(lr: float, epochs: int) -> list[float]:
    """eta_t = lr * 0.1 ** ([t >= 0.5 T] + [t >= 0.75 T]) for t = 0, ..., T - 1 (ch. 9)."""
    return [lr * 0.1 ** ((t >= 0.5 * epochs) + (t >= 0.75 * epochs)) for t in range(epochs)]


def test_learning_rate_is_divided_by_10_at_half_and_three_quarters_of_training(tmp_path):
    # 6 epochs: 75 % is 4.5 epochs, so the second drop comes in epoch t = 5 (0-based).
    history = train(tiny(tmp_path, epochs=6, train_limit=32, test_limit=8)).history
    expected = [0.05, 0.05, 0.05, 0.005, 0.005, 0.0005]
    assert papers_schedule(0.05, 6) == pytest.approx(expected)
    assert [r["lr"] for r in history] == pytest.approx(expected)


@pytest.mark.parametrize(
    "epochs, drops", [(300, [150, 225]), (6, [3, 5]), (4, [2, 3]), (10, [5, 8]), (1, [1, 1])]
)
def test_the_rate_drops_in_the_first_epoch_at_or_past_each_milestone(epochs, drops):
    assert milestone_epochs(epochs, (0.5, 0.75)) == drops
    assert milestone_epochs(epochs, (0.5, 0.75)) == [
        min(t for t in range(epochs + 1) if t >= f * epochs) for f in (0.5, 0.75)
    ]


def test_milestones_are_not_fooled_by_floating_point():
    assert 0.07 * 100 > 7  # 7.000000000000001: ceil would give 8
    assert milestone_epochs(100, (0.07,)) == [7]


@pytest.mark.parametrize("epochs", [6, 300])
def test_the_scheduler_the_loop_builds_follows_the_formula_of_chapter_9(epochs):
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestone_epochs(epochs, (0.5, 0.75)), gamma=0.1
    )
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx(papers_schedule(0.1, epochs))
    if epochs == 300:  # the paper: 0.1 for 150 epochs, 0.01 for 75, 0.001 for 75
        assert rates[149:151] == pytest.approx([0.1, 0.01])
        assert rates[224:226] == pytest.approx([0.01, 0.001])


def test_the_recipe_uses_the_papers_dropout_placement():
    model = build_model(TrainConfig(depth=16, growth_rate=4, drop_rate=0.2), 10, 3)
    assert model.config["dropout_placement"] == "paper" and model.config["drop_rate"] == 0.2


def settings(model: torch.nn.Module) -> dict:
    """A DenseNet's configuration, read by key (a dict or a DenseNetConfig)."""
    return {f.name: model.config[f.name] for f in dataclasses.fields(DenseNetConfig)}


@pytest.mark.parametrize(
    "depth, growth_rate, bottleneck, compression",
    [(100, 12, True, 0.5), (40, 12, False, 1.0), (28, 6, True, 1.0), (16, 8, False, 0.5)],
)
def test_the_run_builds_the_cifar_densenet_of_the_paper(
    depth, growth_rate, bottleneck, compression
):
    config = TrainConfig(
        depth=depth, growth_rate=growth_rate, bottleneck=bottleneck, compression=compression
    )
    expected = de.densenet_cifar(
        depth, growth_rate, bottleneck=bottleneck, compression=compression, num_classes=100
    )
    model = build_model(config, num_classes=100, in_channels=3)
    assert settings(model) == settings(expected)
    assert de.count_parameters(model) == de.count_parameters(expected)


def test_the_model_part_of_a_run_is_a_densenet_config():
    cfg = TrainConfig(depth=40, growth_rate=12, bottleneck=False).model_config(10, 1)
    assert isinstance(cfg, DenseNetConfig)
    # L = 3n + 4 without bottlenecks: 40 = 3 * 12 + 4; the stem has 16 channels.
    assert (cfg.block_config, cfg.num_init_features, cfg.stem) == ((12, 12, 12), 16, "cifar")
    assert (cfg.num_classes, cfg.in_channels) == (10, 1)


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"lr": float("nan")}, "lr must be a positive number"),
        ({"momentum": 0.0}, "momentum must be > 0 for nesterov=True"),
        ({"milestones": (0.5, 1.5)}, "milestones are fractions"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"resume": ""}, "resume must be True, False, 'auto' or a path"),
        ({"depth": 99}, "depth 99 does not fit"),
    ],
)
def test_a_nonsensical_setting_is_refused_when_the_config_is_made(setting, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**setting)


def test_the_training_step_is_public_and_returns_loss_sum_correct_and_count():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    step = TrainStep(net, optimizer, scaler, torch.device("cpu"), "none", torch.contiguous_format)
    images, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    before = torch.nn.functional.cross_entropy(net(images), labels).item()
    loss_sum, correct, n = step(images, labels)
    assert n == 5 and loss_sum == pytest.approx(5 * before) and 0 <= correct <= 5
    assert torch.nn.functional.cross_entropy(net(images), labels).item() < before


# --- a short run ------------------------------------------------------------------------


def test_training_lowers_the_loss_and_writes_log_and_checkpoint(finished_run):
    config, history = finished_run
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    out = Path(config.out_dir)
    assert read_log(out / "metrics.jsonl") == json.loads(json.dumps(history))
    assert (out / "checkpoint.pt").is_file()
    assert not [p for p in out.iterdir() if p.suffix == ".tmp"]  # no temporary files left


def test_every_log_record_has_the_documented_fields(finished_run):
    _, history = finished_run
    fields = {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"}
    assert [set(r) for r in history] == [fields] * 3
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert all(0 <= r["test_acc"] <= 1 and r["seconds"] > 0 for r in history)


def test_checkpoint_loads_with_weights_only_and_rebuilds_the_model(finished_run):
    config, history = finished_run
    path = Path(config.out_dir) / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 3 and state["history"] == history
    model = load_model(path)
    assert isinstance(model, de.DenseNet) and not model.training
    assert model.config["block_config"] == (1, 1, 1) and model.config["in_channels"] == 1
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)


def test_learning_curves_plot_loss_and_accuracy_from_the_log_file(finished_run):
    config, history = finished_run
    fig = plot_learning_curves(Path(config.out_dir) / "metrics.jsonl")
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_xlabel() == "epoch" and "accuracy" in acc_ax.get_ylabel()
    test_curve = [line for line in acc_ax.get_lines() if line.get_label() == "test"][0]
    assert list(test_curve.get_ydata()) == pytest.approx([100 * r["test_acc"] for r in history])
    two = plot_learning_curves({"a": history, "b": history})
    assert len(two.axes[0].get_legend().get_texts()) == 4


# --- determinism and resuming -------------------------------------------------------------


class Interrupted(Exception):
    pass


def stop_after_epoch(n: int):
    def callback(record):
        if record["epoch"] == n:
            raise Interrupted

    return callback


def interrupted_after_first_epoch(config: TrainConfig) -> TrainConfig:
    with pytest.raises(Interrupted):
        train(config, on_epoch_end=stop_after_epoch(1))
    assert load_checkpoint(Path(config.out_dir) / "checkpoint.pt")["epoch"] == 1
    return config


def test_a_resumed_run_ends_exactly_like_an_uninterrupted_one(finished_run, tmp_path):
    config, uninterrupted = finished_run
    config = interrupted_after_first_epoch(replace(config, out_dir=str(tmp_path / "interrupted")))
    resumed = train(replace(config, resume=True)).history
    # Same seed, same batches, same augmentations: identical floats, not just close ones.
    assert without_times(resumed) == without_times(uninterrupted)
    logged = read_log(tmp_path / "interrupted" / "metrics.jsonl")
    assert without_times(logged) == without_times(uninterrupted)


def test_resume_auto_starts_a_new_run_when_there_is_no_checkpoint(finished_run, tmp_path):
    config, uninterrupted = finished_run
    fresh = train(replace(config, out_dir=str(tmp_path / "new"), resume="auto")).history
    assert without_times(fresh) == without_times(uninterrupted)


def test_resume_auto_continues_a_run_that_has_a_checkpoint(finished_run, tmp_path):
    config, uninterrupted = finished_run
    config = interrupted_after_first_epoch(replace(config, out_dir=str(tmp_path / "requeued")))
    resumed = train(replace(config, resume="auto")).history
    assert without_times(resumed) == without_times(uninterrupted)


def test_resume_auto_on_a_finished_run_returns_its_history_without_training(finished_run):
    config, history = finished_run
    before = (Path(config.out_dir) / "checkpoint.pt").read_bytes()
    assert train(replace(config, resume="auto")).history == history
    assert (Path(config.out_dir) / "checkpoint.pt").read_bytes() == before


def test_resume_from_a_path_continues_that_checkpoint_in_a_new_folder(finished_run, tmp_path):
    config, uninterrupted = finished_run
    source = interrupted_after_first_epoch(replace(config, out_dir=str(tmp_path / "a")))
    copy = replace(source, out_dir=str(tmp_path / "b"), resume=str(tmp_path / "a/checkpoint.pt"))
    assert without_times(train(copy).history) == without_times(uninterrupted)
    assert load_checkpoint(tmp_path / "a" / "checkpoint.pt")["epoch"] == 1  # left as it was


def test_another_seed_gives_another_run(finished_run, tmp_path):
    config, history = finished_run
    other = train(replace(config, out_dir=str(tmp_path), seed=1, epochs=1)).history
    assert other[0]["train_loss"] != history[0]["train_loss"]


# --- checkpoints are safe ------------------------------------------------------------------


@pytest.fixture
def saved_run(tmp_path) -> tuple[TrainConfig, bytes]:
    config = tiny(tmp_path / "run", epochs=1, train_limit=32, test_limit=8)
    train(config)
    return config, (tmp_path / "run" / "checkpoint.pt").read_bytes()


def _checkpoint_bytes(config: TrainConfig) -> bytes:
    return (Path(config.out_dir) / "checkpoint.pt").read_bytes()


def test_checkpoint_errors_live_with_the_other_errors():
    assert CheckpointError is CheckpointErrorHome is de.errors.CheckpointError


def test_the_checkpoint_stores_the_models_config_as_a_densenet_config_dict(saved_run):
    config, _ = saved_run
    state = load_checkpoint(Path(config.out_dir) / "checkpoint.pt")
    expected = config.model_config(num_classes=10, in_channels=1)
    assert DenseNetConfig.from_dict(state["model_config"]) == expected
    assert state["model_config"] == expected.to_dict()


def test_a_new_run_refuses_to_overwrite_an_existing_checkpoint(saved_run):
    config, before = saved_run
    with pytest.raises(CheckpointError, match="already exists.*resume=True"):
        train(config)
    assert _checkpoint_bytes(config) == before


def test_resume_rejects_a_checkpoint_of_another_architecture(saved_run):
    config, before = saved_run
    with pytest.raises(
        CheckpointError, match="different architecture.*growth_rate=4 there, 6 here"
    ):
        train(replace(config, resume=True, growth_rate=6))
    assert _checkpoint_bytes(config) == before


def test_resume_rejects_a_checkpoint_trained_with_another_recipe(saved_run):
    config, before = saved_run
    with pytest.raises(CheckpointError, match="lr=0.05 there, 0.1 here"):
        train(replace(config, resume=True, lr=0.1))
    assert _checkpoint_bytes(config) == before


def test_resume_without_a_checkpoint_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        train(tiny(tmp_path, resume=True))
    assert not list(tmp_path.iterdir())


def test_resume_from_a_missing_path_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*elsewhere.pt"):
        train(tiny(tmp_path / "run", resume=str(tmp_path / "elsewhere.pt")))
    assert not list(tmp_path.iterdir())


def test_a_weights_only_copy_cannot_be_resumed(saved_run, tmp_path):
    from densenet_edu.reuse import slim_checkpoint

    config, _ = saved_run
    slim = slim_checkpoint(Path(config.out_dir) / "checkpoint.pt", tmp_path / "slim.pt")
    with pytest.raises(CheckpointError, match="weights only .*load_model"):
        train(replace(config, out_dir=str(tmp_path / "b"), resume=str(slim), epochs=1))
    assert load_model(slim).config["in_channels"] == 1  # what it is for


# --- CIFAR and several processes ---------------------------------------------------------------


def test_the_cli_trains_densenet_bc_100_12_on_cifar10_from_disk(tmp_path, fake_cifar10):
    root = fake_cifar10(tmp_path / "data", per_batch=1)  # 5 training images, 1 test
    out = tmp_path / "run"
    args = ["--dataset", "cifar10", "--data-dir", str(root), "--epochs", "1", "--out-dir", str(out)]
    assert main([*args, "--batch-size", "5", "--quiet"]) == 0
    model = load_model(out / "checkpoint.pt")
    assert model.config["block_config"] == (16, 16, 16) and model.config["growth_rate"] == 12
    assert model.config["num_init_features"] == 24 and model.num_features == 342
    assert math.isfinite(read_log(out / "metrics.jsonl")[0]["train_loss"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_torchrun_on_cpu_completes_and_rank_0_saves(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        "-m", "densenet_edu.train", "--dataset", "digits", "--image-size", "16",
        "--train-limit", "48", "--test-limit", "24", "--depth", "16", "--growth-rate", "4",
        "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--out-dir", str(out),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=150, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done: test accuracy") == 1  # only rank 0 reports
    model = load_model(out / "checkpoint.pt")
    assert model.config["block_config"] == (2, 2, 2)
    (record,) = read_log(out / "metrics.jsonl")
    # Both halves of the test set were counted: accuracy is a multiple of 1/24.
    assert (record["test_acc"] * 24) == pytest.approx(round(record["test_acc"] * 24))
