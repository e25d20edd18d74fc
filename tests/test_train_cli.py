"""The training command line: flags generated from TrainConfig, errors in flag wording,
and ``--resume auto`` surviving a SIGKILL at any moment."""

from __future__ import annotations

import dataclasses
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from train_helpers import (
    REPO,
    cli_command,
    cli_env,
    one_thread,
    run_cli,
    tiny,
    tiny_args,
    without_times,
)

from densenet_edu.train import (
    TrainConfig,
    config_from_args,
    load_checkpoint,
    main,
    read_log,
    train,
)
from densenet_edu.train.cli import flag_wording

FIELDS = dataclasses.fields(TrainConfig)


def help_text(capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping


# --- flags come from the dataclass -------------------------------------------------------------


def test_every_setting_has_a_help_text():
    assert [f.name for f in FIELDS if not f.metadata.get("help")] == []


def test_every_setting_has_a_flag_that_shows_its_help_and_default(capsys):
    out = help_text(capsys)
    for f in FIELDS:
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        assert flag in out, f.name
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        assert f"{' '.join(f.metadata['help'].split())} (default: {default})" in out, f.name


def test_no_arguments_give_the_dataclass_defaults():
    assert config_from_args([]) == TrainConfig()


@pytest.mark.parametrize(
    "args, field, value",
    [
        (["--epochs", "7"], "epochs", 7),
        (["--lr", "0.2"], "lr", 0.2),
        (["-k", "8"], "growth_rate", 8),
        (["--no-bottleneck"], "bottleneck", False),
        (["--download"], "download", True),
        (["--train-limit", "50"], "train_limit", 50),
        (["--milestones", "0.3", "0.6", "0.9"], "milestones", (0.3, 0.6, 0.9)),
        (["--workers", "2"], "num_workers", 2),
        (["--split-seed", "3"], "split_seed", 3),
        (["--resume"], "resume", True),
        (["--resume", "auto"], "resume", "auto"),
        (["--resume", "runs/a/checkpoint.pt"], "resume", "runs/a/checkpoint.pt"),
    ],
)
def test_a_flag_sets_its_field_with_the_fields_type(args, field, value):
    got = getattr(config_from_args(args), field)
    assert got == value and type(got) is type(value)


def test_quiet_turns_off_the_progress_bars_and_the_lines():
    config = config_from_args(["--quiet"])
    assert (config.progress, config.verbose) == (False, False)


def test_help_lists_the_recipe_flags(capsys):
    out = help_text(capsys)
    for flag in ("--growth-rate", "--no-bottleneck", "--milestones", "--resume", "--amp"):
        assert flag in out


def test_help_prints_percent_signs_once_and_says_where_dropout_goes(capsys):
    out = help_text(capsys)
    assert "at 50% and 75% of the epochs" in out and "%%" not in out
    assert "(0.5 0.75: at 50% and 75%)" in out  # a field's help, %-escaped for argparse
    assert "after 150 and 225 of 300" in out
    assert "--drop-rate follows the paper's placement" in out
    assert "paper: after every conv except the first" in out
    assert "torchvision: once per dense layer" in out


def test_help_documents_resume_auto(capsys):
    assert "'auto': continue if it is there, else start" in help_text(capsys)


def test_the_command_line_passes_the_dropout_placement_on(capsys):
    assert config_from_args([]).dropout_placement == "paper"
    config = config_from_args(["--drop-rate", "0.2", "--dropout-placement", "torchvision"])
    assert (config.drop_rate, config.dropout_placement) == (0.2, "torchvision")
    with pytest.raises(SystemExit):
        config_from_args(["--dropout-placement", "everywhere"])
    assert "invalid choice: 'everywhere'" in capsys.readouterr().err


# --- errors in flag wording ----------------------------------------------------------------


@pytest.mark.parametrize(
    "message, expected",
    [
        ("epochs must be a positive integer, got 0", "--epochs must be a positive integer, got 0"),
        ("amp='fp16' needs a CUDA GPU", "--amp fp16 needs a CUDA GPU"),
        ("momentum must be > 0 for nesterov=True", "--momentum must be > 0 for --nesterov"),
        ("x: growth_rate=4 there, 6 here", "x: --growth-rate 4 there, 6 here"),
        ("choose another out_dir", "choose another --out-dir"),
        ("num_workers must be >= 0", "--workers must be >= 0"),
        ("in /runs/out_dir/x", "in /runs/out_dir/x"),  # a path is left alone
        ("unknown dataset 'mnist'", "unknown dataset 'mnist'"),  # prose is left alone
    ],
)
def test_library_errors_are_reworded_with_flags(message, expected):
    assert flag_wording(message) == expected


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "0"], "--lr must be a positive number"),
        (["--lr=-0.1"], "--lr must be a positive number"),
        (["--epochs", "0"], "--epochs must be a positive integer"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (["--momentum", "1"], r"--momentum must be in \[0, 1\)"),
        (["--momentum", "0"], "--momentum must be > 0 for --nesterov"),
        (["--weight-decay=-1e-4"], "--weight-decay must be >= 0"),
        (["--depth", "99"], "--depth 99 does not fit"),
        (["--compression", "0"], r"--compression.* must be in \(0, 1\]"),
        (["--drop-rate", "1"], r"--drop-rate must be .*\[0, 1\)"),
        (["--milestones", "0.5", "1.5"], "milestones are fractions"),
        (["--gamma", "0"], "--gamma"),
        (["--amp", "fp16", "--device", "cpu"], "--amp fp16 needs a CUDA GPU"),
        (["--dataset", "cifar10", "--data-dir", "/nonexistent"], "CIFAR-10 not found"),
    ],
)
def test_nonsensical_settings_get_a_one_line_error_and_exit_2(tmp_path, capsys, args, message):
    code = main(["--dataset", "digits", *args, "--out-dir", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("python -m densenet_edu.train: error:") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not (tmp_path / "r").exists()


def test_unknown_dataset_is_an_argparse_error_listing_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset", "mnist"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'mnist'" in capsys.readouterr().err


def test_the_command_line_reports_errors_without_a_traceback(tmp_path):
    result = run_cli("--dataset", "digits", "--lr", "0", "--out-dir", str(tmp_path))
    assert result.returncode == 2
    assert "error: --lr must be a positive number" in result.stderr
    assert "Traceback" not in result.stderr


def test_plain_resume_without_a_checkpoint_still_fails(tmp_path, capsys):
    assert main(["--dataset", "digits", "--out-dir", str(tmp_path / "r"), "--resume"]) == 2
    assert "--resume: no checkpoint at" in capsys.readouterr().err


# --- a requeued job: SIGKILL at a random moment, then the same command again ---------------


def kill_after_saves(process: subprocess.Popen, path: Path, saves: int, delay: float) -> None:
    """SIGKILL ``process`` ``delay`` seconds after it has replaced ``path`` ``saves`` times."""
    seen, last, deadline = 0, None, time.monotonic() + 120
    while seen < saves:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, f"{path} was not saved {saves} times"
        try:
            stat = path.stat()
            version = (stat.st_ino, stat.st_mtime_ns)  # each save renames a new file over it
        except FileNotFoundError:
            version = None
        if version is not None and version != last:
            seen, last = seen + 1, version
        time.sleep(0.002)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)


@pytest.mark.parametrize("kill_seed", [0])
def test_resume_auto_after_a_sigkill_ends_with_the_weights_of_an_uninterrupted_run(
    tmp_path, kill_seed
):
    epochs = 8
    overrides = dict(epochs=epochs, train_limit=64, test_limit=16, resume="auto")
    with one_thread():  # as in the subprocesses: CPU kernels may round by thread count
        expected = train(tiny(tmp_path / "reference", **overrides))
    command = cli_command(*tiny_args(tmp_path / "requeued", **overrides))
    ckpt_path = tmp_path / "requeued" / "checkpoint.pt"

    # A random moment in a random epoch after the first: mid-batch, mid-evaluation or
    # mid-save (the reference's epochs say how long one takes).
    rng = random.Random(kill_seed)
    epoch_seconds = max(r["seconds"] for r in expected.history)
    saves, delay = rng.randint(1, epochs - 3), rng.uniform(0.0, epoch_seconds)
    first = subprocess.Popen(command, cwd=REPO, env=cli_env(), stderr=subprocess.PIPE, text=True)
    kill_after_saves(first, ckpt_path, saves, delay)
    assert first.wait(timeout=30) == -signal.SIGKILL
    killed_at = load_checkpoint(ckpt_path)["epoch"]
    assert 1 <= killed_at < epochs, "the kill came after the run ended: nothing was tested"

    rerun = subprocess.run(command, cwd=REPO, env=cli_env(), capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    state = load_checkpoint(ckpt_path)
    weights = expected.model.state_dict()
    assert state["model"].keys() == weights.keys()
    for name, tensor in weights.items():
        assert torch.equal(state["model"][name], tensor), name
    logged = read_log(tmp_path / "requeued" / "metrics.jsonl")
    assert without_times(logged) == without_times(expected.history)
    assert not list((tmp_path / "requeued").glob(".*.tmp"))
