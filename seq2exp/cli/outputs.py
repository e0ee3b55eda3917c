"""What evaluate and predict write: never over an input, never over an existing file unasked, whole or not at all,
and no temporary folder left behind on any exit (SIGTERM included).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile

from data_prep.output_folder import interruptible
from seq2exp.cli.checks import UsageError


def _same(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_inputs_exist(paths: list[str], what: str = "input") -> None:
    for path in paths:
        if not os.path.exists(path):
            raise UsageError(f"{path}: {what} not found")


def check_out(out: str | None, inputs: list[str], overwrite: bool, flag: str = "--out") -> None:
    """Before any work: `out` is not an input (or inside an input folder), not a folder, and not an existing
    file unless `overwrite`."""
    if out in (None, "-"):
        return
    for path in inputs:
        if os.path.exists(path) and (_same(out, path) or os.path.isdir(path) and os.path.realpath(out).startswith(
                os.path.realpath(path) + os.sep)):
            raise UsageError(f"{flag} {out} is the input {path}; writing it would destroy the input: choose "
                             "another file name")
    if os.path.isdir(out):
        raise UsageError(f"{flag} {out} is a folder; give a file name")
    if os.path.exists(out) and not overwrite:
        raise UsageError(f"{flag} {out} exists; pass --overwrite to replace it, or choose another name")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {out}: the folder {parent} does not exist")


@contextlib.contextmanager
def atomic_output(out: str | None, mode: str = "w"):
    """A file handle whose content replaces `out` only when the block succeeds ("-"/None: stdout)."""
    if out in (None, "-"):
        yield sys.stdout
        return
    folder, name = os.path.split(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
    try:
        with interruptible(), os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def scratch_dir(prefix: str, given: str | None = None):
    """`given` as it is, else a temporary folder removed on any exit (error, Ctrl-C, SIGTERM)."""
    if given:
        yield given
        return
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        with interruptible():
            yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def exit_code(err: BaseException) -> int:
    """128 + the signal for an interruption (Ctrl-C 130, SIGTERM 143)."""
    return 128 + getattr(err, "signum", 2)
