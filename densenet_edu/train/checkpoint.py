"""Checkpoints and the metrics log: atomic writes, random states, and loading with checks.

A run directory holds ``checkpoint.pt`` (everything needed to continue the run exactly)
and ``metrics.jsonl`` (one JSON record per epoch). Both are written to a temporary file
that is renamed over the old one, the checkpoint first: a crash at any moment leaves a
complete checkpoint, and the log never holds an epoch the checkpoint does not.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from densenet_edu.config import DenseNetConfig
from densenet_edu.errors import CheckpointError, describe_unreadable_file
from densenet_edu.model import DenseNet
from densenet_edu.train.config import RECIPE_FIELDS, TrainConfig

__all__ = [
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "CheckpointError",
    "load_checkpoint",
    "load_model",
]

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "metrics.jsonl"
FORMAT = "densenet_edu.train/1"
#: What a checkpoint needs beyond the weights to continue a run (slim copies lack it).
RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "history", "epoch")
#: Model settings that do not change the weights' meaning, ignored when comparing.
_NON_ARCHITECTURE_KEYS = ("memory_efficient",)


# --- reading -----------------------------------------------------------------------------


def load_checkpoint(
    path: str | os.PathLike, model: nn.Module | None = None, config: TrainConfig | None = None
) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check that it fits.

    Args:
        path: a ``checkpoint.pt`` written by :func:`~densenet_edu.train.train`.
        model: if given, the checkpoint must hold weights for this architecture.
        config: if given, the checkpoint's recipe (dataset, epochs, lr, seed, ...) must match.

    Raises:
        CheckpointError: the file is missing, empty, not a checkpoint, corrupt, or does
            not match; the message says which, in words.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        # weights_only: plain containers and tensors only, never arbitrary code from a file.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # empty, text, truncated zip, a foreign pickle, ...
        reason = describe_unreadable_file(path, e)
        raise CheckpointError(f"{path} cannot be read as a checkpoint: {reason}") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a densenet_edu training checkpoint")
    if model is not None:
        _check_architecture(path, state, model)
    if config is not None:
        _check_recipe(path, state, config)
    return state


def load_model(path: str | os.PathLike) -> DenseNet:
    """Rebuild the DenseNet stored in a checkpoint and load its weights (eval mode)."""
    state = load_checkpoint(path)
    stored = state["model_config"]
    if "growth_rate" not in stored:
        raise CheckpointError(f"{path} holds a {stored.get('class')}, not a densenet_edu DenseNet")
    try:
        config = DenseNetConfig.from_dict(stored)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} holds a model_config that is not a DenseNet's: {e}") from e
    model = DenseNet(config)
    model.load_state_dict(state["model"])
    return model.eval()


def check_resumable(path: Path, state: Mapping[str, Any]) -> None:
    """A slim copy (weights only, see ``reuse.slim_checkpoint``) cannot continue a run."""
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise CheckpointError(
            f"{path} holds weights only (no {', '.join(missing)}), so a run cannot "
            "continue from it; load it with load_model instead"
        )


def architecture(model: nn.Module) -> dict[str, Any]:
    """The model's settings as plain values (``DenseNetConfig.to_dict()`` for a DenseNet)."""
    config = getattr(model, "config", None)
    if isinstance(config, DenseNetConfig):
        return config.to_dict()
    if isinstance(config, Mapping):  # the dict that DenseNet.config used to be
        return {k: _plain(v) for k, v in config.items()}
    return {"class": type(model).__name__}


def recipe(config: TrainConfig) -> dict[str, Any]:
    return {k: _plain(getattr(config, k)) for k in RECIPE_FIELDS}


def param_shapes(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _check_architecture(path: Path, state: Mapping[str, Any], model: nn.Module) -> None:
    theirs, ours = state["model_config"], architecture(model)
    keys = [k for k in dict.fromkeys([*theirs, *ours]) if k not in _NON_ARCHITECTURE_KEYS]
    diffs = [
        f"{k}={theirs.get(k)!r} there, {ours.get(k)!r} here"
        for k in keys
        if theirs.get(k) != ours.get(k)
    ]
    if not diffs and state["param_shapes"] != param_shapes(model):
        diffs = ["parameter shapes differ"]
    if diffs:
        raise CheckpointError(
            f"{path} was saved from a different architecture ({'; '.join(diffs)}); "
            "use the same model settings to resume, or another out_dir"
        )


def _check_recipe(path: Path, state: Mapping[str, Any], config: TrainConfig) -> None:
    theirs = state["recipe"]
    diffs = [
        f"{k}={theirs.get(k)!r} there, {v!r} here"
        for k, v in recipe(config).items()
        if theirs.get(k) != v
    ]
    if diffs:
        raise CheckpointError(
            f"{path} was trained with other settings ({'; '.join(diffs)}); "
            "resume with the same settings or start a new out_dir"
        )


def _plain(value: Any) -> Any:
    """Tuples become lists so that values compare equal after a save/load round trip."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


# --- writing -----------------------------------------------------------------------------


def save_checkpoint(state: Mapping[str, Any], path: Path) -> None:
    """Write ``state`` atomically; if that fails (a full disk), say what is still there.

    The state is serialised in memory first: torch.save turns a failed write into an
    unhelpful RuntimeError, a plain file write keeps the OSError and its errno.
    """
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    try:
        _atomic_write(path, buffer.getvalue())
    except OSError as e:
        epoch = state["epoch"]
        kept = (
            f"the checkpoint of epoch {epoch - 1} is intact, so resuming continues from there"
            if path.exists()
            else "no checkpoint was kept"
        )
        raise CheckpointError(
            f"could not save epoch {epoch} to {path}: {e.strerror or e}; {kept}"
        ) from e


def write_log(path: Path, history: Sequence[Mapping[str, float]]) -> None:
    """``metrics.jsonl``: the records of the epochs the checkpoint holds, one per line."""
    text = "".join(json.dumps(r) + "\n" for r in history)
    try:
        _atomic_write(path, text.encode())
    except OSError as e:
        raise CheckpointError(
            f"could not write {path}: {e.strerror or e} (the checkpoint of epoch "
            f"{len(history)} was saved; resuming rewrites the log from it)"
        ) from e


def sync_log(path: Path, history: Sequence[Mapping[str, float]]) -> None:
    """Make the log hold exactly the checkpoint's epochs (a resumed run starts from them).

    A crash between the checkpoint and the log leaves the log one epoch behind; a log
    from anywhere else may hold anything. An identical log is not rewritten.
    """
    text = "".join(json.dumps(r) + "\n" for r in history)
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.read_text() == text:
            return
    write_log(path, history)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, then rename it over ``path``.

    A crash mid-write leaves the previous file intact: rename is atomic on POSIX and
    Windows when both names are on the same file system. A SIGKILL can leave the
    temporary file behind; :func:`remove_stale_temporaries` deletes it on the next run.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_all(f: io.BufferedWriter, data: bytes) -> None:
    f.write(data)


def remove_stale_temporaries(out_dir: Path) -> list[Path]:
    """Delete temporary files that a killed run left in ``out_dir``; returns them."""
    stale = [
        p
        for name in (CHECKPOINT_NAME, LOG_NAME)
        for p in out_dir.glob(f".{name}.*.tmp")
        if p.is_file()
    ]
    for p in stale:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    return stale


# --- the run directory -------------------------------------------------------------------


def check_out_dir(out_dir: Path) -> None:
    """Fail now, not after an epoch, if ``out_dir`` cannot receive files.

    Nothing is created: a probe file goes into the deepest folder that exists (the
    run directory itself, or the parent it will be created in) and is deleted at once.
    """
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"out_dir {out_dir} cannot be created: {existing} is a file")
    try:
        fd, probe = _create_probe(existing)
    except OSError as e:
        raise ValueError(
            f"out_dir {out_dir} is not writable ({existing}: {e.strerror or e})"
        ) from e
    os.close(fd)
    os.unlink(probe)


def _create_probe(folder: Path) -> tuple[int, str]:
    return tempfile.mkstemp(dir=folder, prefix=".densenet_edu-probe.", suffix=".tmp")


def check_free_space(out_dir: Path, model: nn.Module) -> None:
    """Fail up front when the disk cannot hold a checkpoint of ``model``.

    A checkpoint holds the weights and, for SGD with momentum, as much again in
    momentum buffers; while it is written the previous one still exists.
    """
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    tensors = [*model.parameters(), *model.buffers()]
    needed = 2 * sum(t.numel() * t.element_size() for t in tensors) + (1 << 20)
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise ValueError(
            f"out_dir {out_dir} has {free / 1e6:.1f} MB free, but a checkpoint of this "
            f"model needs about {needed / 1e6:.1f} MB"
        )


# --- random states -----------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """This process's random states as tensors and plain values (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def gather_rng_states(world_size: int) -> list[dict[str, Any]]:
    """Every process's random states, in rank order (a collective: all ranks call it)."""
    if world_size == 1:
        return [rng_state()]
    states: list[Any] = [None] * world_size
    dist.all_gather_object(states, rng_state())
    return states


def set_rng_state(states: Sequence[Mapping[str, Any]], rank: int, world_size: int) -> None:
    if len(states) != world_size:
        # Another number of processes: the data split differs anyway, so reseed freshly.
        torch.manual_seed(int(torch.seed()) if rank else 0)
        return
    state = states[rank]
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
