"""What evaluate and predict write, by the one rule in data_prep.outputs (never over an input or a run's own
files, never over an existing file unasked, whole or not at all), and no temporary folder left behind on any
exit (SIGTERM included).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from data_prep.output_folder import interruptible
from data_prep.outputs import OutputRule
from seq2exp.cli.checks import UsageError


def check_inputs_exist(paths: list[str], what: str = "input") -> None:
    for path in paths:
        if not os.path.exists(path):
            raise UsageError(f"{path}: {what} not found")


def check_out(out: str | None, inputs: list[str], overwrite: bool, flag: str = "--out") -> None:
    """Before any work: `out` may be written (data_prep.outputs' rule: not an input, not a run's own file,
    not an existing file unless `overwrite`)."""
    OutputRule(inputs, overwrite).check_file(out, flag)


def atomic_output(out: str | None, mode: str = "w"):
    """A handle whose content replaces `out` when the block succeeds; a run's own files are still refused."""
    return OutputRule(overwrite=True).open(out, mode)


def model_inputs(model_path: str) -> list[str]:
    """What a command reads of a trained model: the run folder's (or the .keras file's) model and config.yaml."""
    folder = model_path if os.path.isdir(model_path) else os.path.dirname(os.path.abspath(model_path))
    model = os.path.join(model_path, "model.keras") if os.path.isdir(model_path) else model_path
    return [model, os.path.join(folder, "config.yaml")]


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
