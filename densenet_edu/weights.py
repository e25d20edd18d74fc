"""Loading torchvision's DenseNet weights: downloads, local files and the legacy key format.

torchvision's ImageNet weights ("IMAGENET1K_V1", ported from the authors' LuaTorch
models) are published as ``.pth`` files whose keys still use the 2017 naming
``denselayer1.norm.1.weight``: module names containing dots were disallowed in
PyTorch 0.4, so torchvision renamed the modules to ``norm1`` but kept the files and
renames the keys on load. :func:`load_torchvision_weights` does the same.
"""

from __future__ import annotations

import os
import re
import urllib.error
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from densenet_edu.errors import WeightsError

__all__ = [
    "LEGACY_KEY",
    "WEIGHTS_URLS",
    "convert_legacy_keys",
    "load_torchvision_weights",
    "mismatch_report",
    "resolve_weights",
]

#: torchvision's IMAGENET1K_V1 files. The hex part of each name is the start of the
#: file's SHA-256, which torch.hub checks after downloading.
WEIGHTS_URLS: dict[str, str] = {
    "densenet121": "https://download.pytorch.org/models/densenet121-a639ec97.pth",
    "densenet161": "https://download.pytorch.org/models/densenet161-8d451a50.pth",
    "densenet169": "https://download.pytorch.org/models/densenet169-b2777c0a.pth",
    "densenet201": "https://download.pytorch.org/models/densenet201-c1103571.pth",
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


def resolve_weights(
    arch: str, weights: str | os.PathLike, progress: bool = True
) -> dict[str, Tensor]:
    """Turn a ``weights=`` argument into a state_dict.

    ``"IMAGENET1K_V1"`` (or ``"DEFAULT"``) downloads torchvision's file into the torch
    hub cache (``torch.hub.get_dir()``) with a hash check and a progress bar; anything
    else is taken as the path of a local ``.pth`` file.
    """
    name = getattr(weights, "name", weights)  # also accept torchvision's weight enums
    if isinstance(name, str) and name in ("IMAGENET1K_V1", "DEFAULT"):
        if arch not in WEIGHTS_URLS:
            raise WeightsError(
                f"there are no published ImageNet weights for {arch} (only for "
                f"{', '.join(WEIGHTS_URLS)}); pass weights=None or the path of your own file"
            )
        return _download(WEIGHTS_URLS[arch], progress)
    if isinstance(weights, (str, os.PathLike)):
        return _load_file(Path(weights))
    raise TypeError(
        f"weights must be None, 'IMAGENET1K_V1' or a file path, got {type(weights).__name__}"
    )


def _download(url: str, progress: bool) -> dict[str, Tensor]:
    try:
        return torch.hub.load_state_dict_from_url(
            url, progress=progress, check_hash=True, map_location="cpu", weights_only=True
        )
    except (urllib.error.URLError, OSError, RuntimeError) as err:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        filename = url.rsplit("/", 1)[-1]
        raise WeightsError(
            f"could not get the pretrained weights from {url}: {err}.\n"
            f"If this machine is offline, download {filename} elsewhere and either put it "
            f"in {cache}/ or pass its path: densenet121(weights='/path/to/{filename}')."
        ) from err


def _load_file(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise WeightsError(
            f"weights file {str(path)!r} does not exist; pass weights='IMAGENET1K_V1' to "
            "download torchvision's weights, or the path of a .pth file"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file fails in many different ways
        raise WeightsError(f"could not read weights from {str(path)!r}: {err}") from err
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise WeightsError(f"{str(path)!r} does not hold a state_dict")
    return dict(state)
