"""What a checker returns: :class:`CheckResult`, and :func:`run_check`, which makes one.

Inside a checker the first thing found wrong is raised as a :class:`Failure`;
:func:`run_check` turns it into the failed result, so a checker reads top to bottom as
the list of things it verifies.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

import torch

from densenet_edu.exercises.mistakes import Mistake

__all__ = ["CheckResult", "Failure", "run_check"]

_PASS_STYLE = ("#1a7f37", "#eaf6ec", "&#10004;", "passed")
_FAIL_STYLE = ("#b3261e", "#fdeceb", "&#10008;", "not yet right")


@dataclass(frozen=True)
class CheckResult:
    """The verdict of a checker: truthy on a pass, falsy on a failure.

    Attributes:
        check: the checker's name, e.g. ``"check_dense_layer"``.
        passed: whether the learner's code matches the reference.
        message: a short pass note, or the diagnosis of the first thing that is wrong.
        mistake: the code of the diagnosis, a :class:`Mistake` (which equals its string,
            e.g. ``"max_pool"``); ``None`` on a pass.
        details: extra context, e.g. the learner's line that raised.
    """

    check: str
    passed: bool
    message: str
    mistake: str | None = None
    details: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "not yet right"
        text = f"{self.check}: {verdict}\n{self.message}"
        return f"{text}\n\n{self.details}" if self.details else text

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        """A green or red box in a notebook (the book's CSS keys on the two class names)."""
        colour, background, icon, verdict = _PASS_STYLE if self.passed else _FAIL_STYLE
        body = html.escape(self.message).replace("\n", "<br>")
        details = (
            f'<pre style="margin:0.5em 0 0;padding:0.4em;background:#ffffff;color:#1f2328;'
            f'white-space:pre-wrap;font-size:0.9em">{html.escape(self.details)}</pre>'
            if self.details
            else ""
        )
        state = "pass" if self.passed else "fail"
        return (
            f'<div class="densenet-edu-check densenet-edu-check-{state}" '
            f'style="border-left:5px solid {colour};background:{background};color:#1f2328;'
            f'padding:0.6em 0.9em;margin:0.4em 0;border-radius:4px">'
            f'<strong style="color:{colour}">{icon} {html.escape(self.check)}: {verdict}</strong>'
            f'<div style="margin-top:0.3em">{body}</div>{details}</div>'
        )

    def raise_if_failed(self) -> CheckResult:
        """Raise ``AssertionError`` with the message on a failure; return ``self`` on a pass."""
        if not self.passed:
            raise AssertionError(str(self))
        return self


class Failure(Exception):
    """Raised inside a checker to stop at the first thing that is wrong."""

    def __init__(self, message: str, mistake: Mistake, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.mistake = mistake
        self.details = details


def run_check(check: str, body: Callable[[], str]) -> CheckResult:
    """Run a checker's ``body`` (which returns the pass note) and wrap its verdict.

    The checker must not disturb the learner's random state, and must see the same
    inputs on every run: it runs on a forked, seeded random state.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            message = body()
        except Failure as failure:
            return CheckResult(check, False, failure.message, failure.mistake, failure.details)
    return CheckResult(check, True, message)
