"""``python -m densenet_edu.train``: flags generated from :class:`TrainConfig`'s fields.

Each field becomes ``--field-name`` with the field's type, default and help; booleans get
``--name`` / ``--no-name``. Errors from the library name fields (``epochs must be ...``,
``amp='fp16' needs ...``); :func:`flag_wording` rewrites them with flags, and :func:`main`
prints them as one line and exits 2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import typing
from collections.abc import Sequence
from dataclasses import Field, fields
from typing import Any

from densenet_edu.train.config import TrainConfig
from densenet_edu.train.loop import train

__all__ = ["config_from_args", "flag_wording", "main"]

PROG = "python -m densenet_edu.train"
DESCRIPTION = (
    "Train a CIFAR-style DenseNet with the paper's recipe (Huang et al., CVPR 2017, "
    "Section 4.2). Defaults: DenseNet-BC L=100 k=12 on CIFAR-10, 300 epochs, SGD "
    "with Nesterov momentum 0.9, weight decay 1e-4, batch 64, lr 0.1 divided by 10 "
    "at 50% and 75% of the epochs (after ceil(f * T) of T epochs: after 150 and 225 "
    "of 300). --drop-rate follows the paper's placement (after every convolution except "
    "the first) unless --dropout-placement torchvision. Several GPUs: torchrun "
    "--nproc_per_node N -m densenet_edu.train ..."
)
_GROUPS = {
    "data": "data",
    "model": "model (a CIFAR-style DenseNet: 3 blocks, 3x3 stem)",
    "optimisation": "optimisation",
    "run": "run",
}
_PASSED_ON = ("choices", "metavar", "nargs", "const", "type")


def flag(f: Field) -> str:
    """The command-line flag of a TrainConfig field: ``--growth-rate`` for growth_rate."""
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def _argument(f: Field, hint: Any) -> tuple[list[str], dict[str, Any]]:
    """argparse's option strings and keyword arguments for one field."""
    names = [flag(f)] + ([f.metadata["short"]] if "short" in f.metadata else [])
    # argparse %-formats help texts (for %(default)s): a literal % must be doubled.
    kwargs: dict[str, Any] = {"dest": f.name, "default": f.default}
    kwargs["help"] = f.metadata["help"].replace("%", "%%")
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(hint) is tuple:
        kwargs.update(type=args[0], nargs="+", default=list(f.default))
    elif args:  # int | None: the flag takes an int, None is the default
        kwargs["type"] = args[0]
    else:
        kwargs["type"] = hint
    kwargs.update({k: f.metadata[k] for k in _PASSED_ON if k in f.metadata})
    return names, kwargs


def parser() -> argparse.ArgumentParser:
    """The command line: one flag per TrainConfig field, in the dataclass's order."""
    p = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    groups = {key: p.add_argument_group(title) for key, title in _GROUPS.items()}
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        names, kwargs = _argument(f, hints[f.name])
        groups[f.metadata["group"]].add_argument(*names, **kwargs)
    groups["run"].add_argument(
        "--quiet", action="store_true", help="no progress bars or epoch lines: --no-progress "
        "--no-verbose",
    )  # fmt: skip
    return p


def config_from_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse command-line arguments into a :class:`TrainConfig`.

    argparse errors exit 2; a nonsensical value raises ValueError with the field's name.
    """
    values = vars(parser().parse_args(argv))
    if values.pop("quiet"):
        values.update(progress=False, verbose=False)
    return TrainConfig(**values)


def flag_wording(message: str) -> str:
    """A library error in command-line terms: fields become flags.

    ``epochs must be ...`` -> ``--epochs must be ...``; ``amp='fp16'`` -> ``--amp fp16``;
    ``nesterov=True`` -> ``--nesterov``; an identifier such as ``out_dir`` -> ``--out-dir``.
    """
    flags = {f.name: flag(f) for f in fields(TrainConfig)}

    def assignment(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        if name not in flags:
            return m.group(0)
        if value in ("True", "False"):
            return flags[name] if value == "True" else flags[name].replace("--", "--no-", 1)
        return f"{flags[name]} {value.strip(chr(39))}"

    message = " ".join(message.split())  # one line, whatever the cause's message held
    message = re.sub(r"(?<![\w/-])(\w+)=('[^']*'|[^\s,;:)]+)", assignment, message)
    lead = re.match(r"(\w+)\b", message)
    if lead and lead.group(1) in flags:
        message = flags[lead.group(1)] + message[lead.end() :]
    return re.sub(
        r"(?<![\w/.-])([a-z]+_[a-z_]+)(?![\w/-])",
        lambda m: flags.get(m.group(1), m.group(1)),
        message,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: returns 0 on success; bad input prints one line, exits 2."""
    try:
        config = config_from_args(argv)
        result = train(config)
    except ValueError as e:  # DataError and CheckpointError are ValueErrors too
        print(f"{PROG}: error: {flag_wording(str(e))}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0 and config.verbose:
        final = result.final
        print(
            f"done: test accuracy {final['test_acc']:.2%} after {final['epoch']} epochs; "
            f"checkpoint {result.checkpoint_path}, log {result.log_path}"
        )
    return 0
