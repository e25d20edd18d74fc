"""Training when things go wrong: kills mid-write, full disks, unwritable folders, files
that are not checkpoints; and what a run prints."""

from __future__ import annotations

import errno
import os
from collections import namedtuple
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from train_helpers import tiny

from densenet_edu.progress import STATIC_ENV_VAR
from densenet_edu.train import CheckpointError, load_checkpoint, main, read_log, train
from densenet_edu.train import checkpoint as checkpoint_module
from densenet_edu.train import loop as loop_module

DiskUsage = namedtuple("DiskUsage", "total used free")
STALE = (".checkpoint.pt.a1b2c3.tmp", ".metrics.jsonl.d4e5f6.tmp")


class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs."""


def killed(*args) -> None:
    raise Killed


@pytest.fixture
def one_epoch(tmp_path):
    """A finished one-epoch run of two planned (``resume=True`` continues it)."""
    config = tiny(tmp_path / "run", epochs=2, train_limit=32, test_limit=8)
    with pytest.raises(Killed):
        train(config, on_epoch_end=killed)
    return config


# --- kills while writing -------------------------------------------------------------------


def test_stale_temporary_files_are_removed_when_a_run_resumes(one_epoch):
    out = Path(one_epoch.out_dir)
    for name in STALE:
        (out / name).write_bytes(b"half a file")
    (out / "notes.tmp").write_text("not ours")
    train(replace(one_epoch, resume=True))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.jsonl", "notes.tmp"]


def test_stale_temporary_files_are_removed_when_a_run_starts(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in STALE:  # killed while writing its first checkpoint: no checkpoint.pt yet
        (out / name).write_bytes(b"half a file")
    train(tiny(out, epochs=1, train_limit=32, test_limit=8))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]


def test_a_kill_between_checkpoint_and_log_leaves_the_log_behind_not_ahead(one_epoch, monkeypatch):
    monkeypatch.setattr(loop_module, "write_log", killed)
    with pytest.raises(Killed):
        train(replace(one_epoch, resume=True))
    out = Path(one_epoch.out_dir)
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2
    assert [r["epoch"] for r in read_log(out / "metrics.jsonl")] == [1]


def test_a_kill_while_saving_the_checkpoint_logs_nothing_new(one_epoch, monkeypatch):
    monkeypatch.setattr(loop_module, "save_checkpoint", killed)
    with pytest.raises(Killed):
        train(replace(one_epoch, resume=True))
    out = Path(one_epoch.out_dir)
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert [r["epoch"] for r in read_log(out / "metrics.jsonl")] == [1]


def test_resuming_cuts_the_log_back_to_the_epochs_of_the_checkpoint(tmp_path):
    finished = tiny(tmp_path / "run", epochs=1, train_limit=32, test_limit=8)
    train(finished)
    log = tmp_path / "run" / "metrics.jsonl"
    with log.open("a") as f:
        f.write('{"epoch": 2, "note": "an epoch the checkpoint does not hold"}\n')
    history = train(replace(finished, resume=True)).history  # nothing left to train
    assert [r["epoch"] for r in history] == [1]
    assert read_log(log) == history


# --- a full disk ------------------------------------------------------------------------------


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint_and_says_so(
    one_epoch, monkeypatch
):
    def disk_full(f, data):
        if not data.startswith(b"PK"):  # the log, not the checkpoint (a zip archive)
            return f.write(data)
        f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = Path(one_epoch.out_dir)
    before = (out / "checkpoint.pt").read_bytes()
    monkeypatch.setattr(checkpoint_module, "_write_all", disk_full)
    with pytest.raises(CheckpointError) as error:
        train(replace(one_epoch, resume=True))
    message = str(error.value)
    assert "could not save epoch 2" in message and "No space left on device" in message
    assert "the checkpoint of epoch 1 is intact" in message
    assert (out / "checkpoint.pt").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]


def test_the_command_line_reports_a_full_disk_in_one_line(one_epoch, monkeypatch, capsys):
    def disk_full(f, data):
        if not data.startswith(b"PK"):  # the log, not the checkpoint (a zip archive)
            return f.write(data)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module, "_write_all", disk_full)
    args = ["--dataset", "digits", "--image-size", "16", "--depth", "10", "--growth-rate", "4"]
    args += ["--train-limit", "32", "--test-limit", "8", "--epochs", "2", "--batch-size", "32"]
    args += ["--lr", "0.05", "--out-dir", one_epoch.out_dir, "--resume", "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "intact" in err


def test_a_disk_too_full_for_one_checkpoint_is_found_before_training(tmp_path, monkeypatch):
    def nearly_full(path):
        return DiskUsage(total=10**9, used=10**9 - 1000, free=1000)

    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", nearly_full)
    with pytest.raises(ValueError, match="MB free, but a checkpoint of this model needs"):
        train(tiny(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


# --- folders that cannot be written ------------------------------------------------------------


def test_an_out_dir_inside_a_file_is_refused_up_front(tmp_path, capsys):
    (tmp_path / "file").write_text("a file, not a folder")
    out = tmp_path / "file" / "run"
    assert main(["--dataset", "digits", "--out-dir", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'file'} is a file" in err
    assert err.startswith("python -m densenet_edu.train: error: --out-dir")


def test_an_out_dir_without_write_permission_is_refused_up_front(tmp_path, monkeypatch, capsys):
    def permission_denied(folder):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))

    # root may write anywhere, so the refusal of the file system is simulated.
    monkeypatch.setattr(checkpoint_module, "_create_probe", permission_denied)
    assert main(["--dataset", "digits", "--out-dir", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out-dir" in err and "not writable" in err
    assert "Permission denied" in err and not (tmp_path / "run").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_out_dir_is_refused_up_front(tmp_path, capsys):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o500)
    assert main(["--dataset", "digits", "--out-dir", str(folder / "run"), "--quiet"]) == 2
    assert "not writable" in capsys.readouterr().err


def test_the_probe_leaves_nothing_behind(tmp_path):
    checkpoint_module.check_out_dir(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []


# --- files that are not checkpoints ---------------------------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", r"is empty \(0 bytes\)"),
        (b"epoch 1: test acc 98%\n", r"is a text file \(it starts with 'epoch 1: test acc 98%'\)"),
        (b"\x00\x01\xfe\xff" * 16, "not a file written by torch.save"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_described_in_words(tmp_path, content, message):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot be read as a checkpoint: .*" + message):
        load_checkpoint(path)


def test_a_truncated_checkpoint_is_called_truncated(one_epoch):
    path = Path(one_epoch.out_dir) / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_checkpoint(path)


def test_a_foreign_pickle_is_not_unpickled(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": Killed}, path)  # a class: weights_only loading refuses it
    with pytest.raises(CheckpointError, match="pickled Python objects besides tensors"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", "half"])
def test_a_bad_checkpoint_gets_a_one_line_error_and_is_kept(one_epoch, capsys, content):
    path = Path(one_epoch.out_dir) / "checkpoint.pt"
    if content == "half":
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    args = ["--dataset", "digits", "--out-dir", one_epoch.out_dir, "--resume", "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "cannot be read as a checkpoint: " in err
    assert err.count("\n") == 1 and "(corrupt?)" not in err
    assert path.read_bytes() == content


# --- what a run prints ------------------------------------------------------------------------


def test_with_progress_bars_each_epoch_is_one_line_in_the_book(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(STATIC_ENV_VAR, "1")  # as when the book is built
    history = train(tiny(tmp_path, progress=True, verbose=True)).history
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).splitlines()
    assert len(lines) == len(history) == 3
    for line, record in zip(lines, history, strict=True):
        assert line.startswith(f"epoch {record['epoch']}/3: 100%")
        assert f"test_acc={record['test_acc']:.2%}" in line


def test_without_progress_bars_each_epoch_is_one_plain_line(tmp_path, capsys):
    history = train(tiny(tmp_path, progress=False, verbose=True)).history
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert f"test acc {history[-1]['test_acc']:.2%}" in lines[-1]
