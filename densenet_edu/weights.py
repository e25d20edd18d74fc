"""Loading torchvision's DenseNet weights: downloads, local files and the legacy key format.

torchvision's ImageNet weights ("IMAGENET1K_V1", ported from the authors' LuaTorch
models) are published as ``.pth`` files whose keys still use the 2017 naming
``denselayer1.norm.1.weight``: module names containing dots were disallowed in
PyTorch 0.4, so torchvision renamed the modules to ``norm1`` but kept the files and
renames the keys on load. :func:`load_torchvision_weights` does the same.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from densenet_edu.architectures import TABLE, TorchvisionWeights
from densenet_edu.errors import WeightsError, describe_unreadable_file

__all__ = [
    "LEGACY_KEY",
    "WEIGHTS_URLS",
    "convert_legacy_keys",
    "load_torchvision_weights",
    "load_weights_file",
    "mismatch_report",
    "resolve_weights",
]

#: torchvision's IMAGENET1K_V1 files, a view of :data:`densenet_edu.architectures.TABLE`
#: (which downloads read). The hex part of each name is the start of the file's SHA-256,
#: which the download checks.
WEIGHTS_URLS: dict[str, str] = {
    name: a.weights["IMAGENET1K_V1"].url for name, a in TABLE.items() if a.weights
}

#: A 2017-style dense-layer key, e.g. "features.denseblock1.denselayer1.norm.1.weight":
#: group 1 ends with the module name ("...denselayer1.norm"), group 2 is "1.weight".
LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def convert_legacy_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename 2017-style keys (``norm.1.weight``) to the modern form (``norm1.weight``).

    Modern keys pass through unchanged, and so does a ``module.`` prefix left by
    ``nn.DataParallel``/``DistributedDataParallel``, which is stripped.
    """
    converted = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        match = LEGACY_KEY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        converted[key] = value
    return converted


def load_torchvision_weights(
    model: nn.Module, source: nn.Module | Mapping[str, Tensor]
) -> nn.Module:
    """Copy torchvision DenseNet weights into ``model`` (in place) and return it.

    Args:
        model: a :class:`densenet_edu.DenseNet` (or any module with the same keys).
        source: a torchvision model, a modern ``state_dict``, or a legacy 2017
            checkpoint (keys like ``denselayer1.norm.1.weight``).

    Raises:
        WeightsError: listing every missing, unexpected and wrongly shaped key at once.
    """
    if isinstance(source, nn.Module):
        source = source.state_dict()
    if not isinstance(source, Mapping):
        raise TypeError(
            "source must be a torchvision model or a state_dict (a mapping of names to "
            f"tensors), got {type(source).__name__}"
        )
    state_dict = convert_legacy_keys(source)
    target = model.state_dict()
    # The 2017 files predate BatchNorm's num_batches_tracked counter; it only matters
    # for momentum=None, so the model's own (zero) counters are kept.
    for key, value in target.items():
        if key.endswith("num_batches_tracked") and key not in state_dict:
            state_dict[key] = value

    missing = sorted(set(target) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(target))
    wrong_shape = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)}, model {tuple(target[k].shape)}"
        for k in set(target) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(target[k].shape)
    )
    if missing or unexpected or wrong_shape:
        raise WeightsError(mismatch_report(missing, unexpected, wrong_shape))
    model.load_state_dict(state_dict, strict=True)
    return model


def mismatch_report(missing: list[str], unexpected: list[str], wrong_shape: list[str]) -> str:
    """The message of the WeightsError for keys that do not fit: at most ten of each kind."""

    def section(title: str, items: list[str], limit: int = 10) -> str:
        if not items:
            return ""
        shown = "\n".join(f"    {item}" for item in items[:limit])
        more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
        return f"\n  {title} ({len(items)}):\n{shown}{more}"

    return (
        "the weights do not fit this model (was it built with the same architecture "
        "and num_classes?)"
        + section("missing from the checkpoint", missing)
        + section("unexpected in the checkpoint", unexpected)
        + section("wrong shape", wrong_shape)
    )


def resolve_weights(arch: str, weights: Any, progress: bool = True) -> dict[str, Tensor]:
    """Turn a ``weights=`` argument into a state_dict, before any model is built.

    ``"IMAGENET1K_V1"`` (or ``"DEFAULT"``, or torchvision's ``DenseNet121_Weights`` enum
    of the same model) downloads torchvision's file into the torch hub cache
    (``torch.hub.get_dir()/checkpoints``) with a hash check and a progress bar; anything
    else is taken as the path of a local ``.pth`` file.

    Raises:
        WeightsError: unknown weights name (the message lists the published ones), an
            enum of another model, a missing, empty, damaged or foreign file, a failed
            download.
    """
    name = _weights_name(arch, weights)
    if name is not None:
        return _download(_published(arch, name), progress)
    if isinstance(weights, (str, os.PathLike)):
        return load_weights_file(Path(weights))
    raise TypeError(
        f"weights must be None, 'IMAGENET1K_V1' or a file path, got {type(weights).__name__}"
    )


def _weights_name(arch: str, weights: Any) -> str | None:
    """The published weights ``weights`` names, or None if it is a path."""
    if isinstance(weights, enum.Enum):  # torchvision's DenseNet121_Weights.IMAGENET1K_V1
        expected = f"DenseNet{arch.removeprefix('densenet')}_Weights"
        if type(weights).__name__ != expected:
            raise WeightsError(
                f"{arch} cannot load {type(weights).__name__}.{weights.name}, torchvision's "
                f"weights for another model; pass {expected}.{weights.name} or "
                f"weights={weights.name!r}"
            )
        return weights.name
    if isinstance(weights, str) and not Path(weights).exists():
        if weights == "DEFAULT" or re.fullmatch(r"[A-Z][A-Z0-9]*_[A-Z0-9_]+", weights):
            return weights
    return None


def _published(arch: str, name: str) -> TorchvisionWeights:
    published = TABLE[arch].weights
    if not published:
        with_weights = [n for n, a in TABLE.items() if a.weights]
        raise WeightsError(
            f"there are no published ImageNet weights for {arch} (only for "
            f"{', '.join(with_weights)}); pass weights=None or the path of your own file"
        )
    default = next(iter(published))
    found = published.get(default if name == "DEFAULT" else name)
    if found is None:
        names = ", ".join(repr(n) for n in published)
        raise WeightsError(
            f"torchvision publishes no weights named {name!r} for {arch}; it publishes "
            f"{names} (also called 'DEFAULT'). Or pass the path of a .pth file"
        )
    return found


def _download(weights: TorchvisionWeights, progress: bool) -> dict[str, Tensor]:
    """torch.hub's cache and download, with each failure told apart in the message."""
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    path = cache / weights.filename
    if not path.exists():
        match = torch.hub.HASH_REGEX.search(weights.filename)
        try:
            cache.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(
                weights.url, str(path), match.group(1) if match else None, progress=progress
            )
        except Exception as err:  # offline, refused, wrong hash, disk full ...
            raise WeightsError(
                f"could not get the pretrained weights from {weights.url}: {err}.\n"
                f"If this machine is offline, download {weights.filename} elsewhere and either "
                f"put it in {cache}/ or pass its path: "
                f"{weights.arch}(weights='/path/to/{weights.filename}')."
            ) from err
    try:
        return load_weights_file(path)
    except WeightsError as err:
        reason = describe_unreadable_file(path, err.__cause__ or err)
        raise WeightsError(
            f"the cached copy of {weights.filename} in {cache} is damaged: {reason}. "
            f"Delete {path} and run again to download it afresh"
        ) from err


def load_weights_file(path: Path) -> dict[str, Tensor]:
    """The state_dict in a ``.pth`` file (``weights_only``: no code runs), or a WeightsError
    that says why not: no such file, a directory, an empty, damaged or foreign file."""
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.pth"))[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise WeightsError(
            f"{str(path)!r} is a directory{hint}; pass the path of a weights file (.pth)"
        )
    if not path.is_file():
        raise WeightsError(
            f"weights file {str(path)!r} does not exist; pass weights='IMAGENET1K_V1' to "
            "download torchvision's weights, or the path of a .pth file"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file fails in many different ways
        reason = describe_unreadable_file(path, err)
        raise WeightsError(f"could not read weights from {str(path)!r}: {reason}") from err
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise WeightsError(
            f"{str(path)!r} holds a {type(state).__name__}, not a state_dict (a mapping of "
            "parameter names to tensors)"
        )
    return dict(state)
