"""Progress bars that look right everywhere: a live widget in Jupyter/Colab, a live bar in a
terminal, and a single final line in the built book (a static page cannot animate, and the
book build would otherwise record every intermediate redraw)."""

from __future__ import annotations

import os
from typing import Any

from tqdm import tqdm as _terminal_tqdm

__all__ = ["STATIC_ENV_VAR", "progress_bar"]

#: Set by ``make book``: progress bars then print one line when they finish.
STATIC_ENV_VAR = "DENSENET_EDU_STATIC_PROGRESS"


class _FinalLineTqdm(_terminal_tqdm):
    """A tqdm that draws nothing while running and one summary line when closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["delay"] = float("inf")  # never draw intermediate states
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        if not self.disable and not getattr(self, "_summary_written", False):
            self._summary_written = True
            self.fp.write(self.format_meter(**self.format_dict) + "\n")
            self.fp.flush()
        super().close()


def progress_bar(iterable: Any = None, **kwargs: Any) -> _terminal_tqdm:
    """``tqdm.auto.tqdm``, or a one-line summary bar when building the book.

    Takes the same arguments as tqdm (``desc``, ``total``, ``leave``, ``disable``, ...).
    """
    if os.environ.get(STATIC_ENV_VAR):
        return _FinalLineTqdm(iterable, **kwargs)
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)
