"""Errors a build stops with (shared by the builder and its input/output checks)."""
from __future__ import annotations

import signal


class BuildError(RuntimeError):
    """A build that must stop (strict mode, unusable output folder, bad input file, no records at all)."""


class BuildInterrupted(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) arrived: raised in the main thread so the temporary folder is removed on the way out."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
