"""Errors a build stops with (shared by the builder and its input/output checks)."""
from __future__ import annotations

import signal


class Seq2ExpError(Exception):
    """Base of every error this project raises for a user to act on (bad input, a refused flag, a run that
    cannot go on). The commands print it as one line with exit 2 (or 1); `except seq2exp.Seq2ExpError` in a
    notebook catches them all. It lives in the lowest layer so data_prep's errors share it."""


class BuildError(Seq2ExpError, RuntimeError):
    """A build that must stop (strict mode, unusable output folder, bad input file, no records at all)."""


class BuildInterrupted(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) arrived: raised in the main thread so the temporary folder is removed on the way out."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
