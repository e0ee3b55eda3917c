"""The one rule for every file a command writes (build, train, evaluate, predict, report, the converters,
the benchmarks), kept in the lowest layer so that all of them can use it:

- never over a file this command did not create in this invocation, unless `--overwrite` is given;
- never, even with `--overwrite`, over one of its inputs (the model it reads included), into an input folder,
  or over a file that a run folder owns (`RUN_ENTRIES`: its model.keras, config.yaml, checkpoints, ...);
- whole or not at all: a file is written beside its name and renamed into place when complete.

Commands check every output path before any long work (`OutputRule.check_file` / `check_folder`) and write
through `OutputRule.open` / `OutputRule.staged`, which check again (so a report's sub-files and a name that
appeared meanwhile are covered). The advisory lock that keeps a second writer out of a build's `--out` or a
training's run folder is here too (`advisory_lock`).
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
import tempfile
import time

from data_prep.errors import Seq2ExpError
from data_prep.output_folder import interruptible

LOCK = ".seq2exp.lock"
#: what a training writes into its run folder (also inside pretrain/ and finetune/): the run owns these
RUN_ENTRIES = ("config.yaml", "config.yaml.tmp", "history.json", "history.csv", "metrics.json", "model.keras",
               "model.partial.keras", "checkpoints", "best", "best.partial", "best.old", "tensorboard", "data",
               "pretrain", "finetune", "demo", "inputs", "curves.png", "provenance.json", "test_predictions",
               "datasets.json", LOCK)


_TRAINED = ("history.json", "model.keras", "checkpoints", "pretrain", "finetune")


class OutputError(Seq2ExpError, ValueError):
    """An output path a command must not write; the message names the flag, the file and what to do instead."""


class LockedError(Seq2ExpError, RuntimeError):
    """Another live process holds the advisory lock on a folder this command would write."""


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(path))


def _inside(path: str, folder: str) -> bool:
    """`path` is `folder` or below it (both real paths)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def is_run_folder(folder: str) -> bool:
    """A training's run folder: it holds the lock file every training takes, or a config.yaml naming a model
    next to what a training leaves (history.json, model.keras, checkpoints/, pretrain/, finetune/). A project
    folder that merely keeps a config.yaml for `--config` is not one."""
    if os.path.isfile(os.path.join(folder, LOCK)):
        return True
    if not any(os.path.exists(os.path.join(folder, m)) for m in _TRAINED):
        return False
    try:
        with open(os.path.join(folder, "config.yaml"), errors="replace") as fh:
            return re.search(r"^model:", fh.read(1 << 16), re.M) is not None
    except OSError:
        return False


def run_owner(path: str) -> tuple[str, str] | None:
    """(run folder, the run's entry) when `path` is or lies inside a file or folder a run folder owns."""
    real = _real(path)
    folder = os.path.dirname(real)
    while True:
        entry = os.path.relpath(real, folder).split(os.sep)[0]
        if entry in RUN_ENTRIES and is_run_folder(folder):
            return folder, entry
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


class OutputRule:
    """One command invocation's outputs: what it reads (never written), `--overwrite`, and what it created."""

    def __init__(self, inputs=(), overwrite: bool = False):
        self.inputs = [(p, _real(p)) for p in inputs if p not in (None, "-")]
        self.overwrite = overwrite
        self.created: set[str] = set()

    def add_inputs(self, *paths: str) -> None:
        self.inputs += [(p, _real(p)) for p in paths if p not in (None, "-")]

    def check_protected(self, path: str, flag: str) -> None:
        """`path` (a file or folder the command adds files to) is not an input, inside one, or a run's own."""
        self._not_input(path, flag, _real(path))

    def _not_input(self, path: str, flag: str, real: str) -> None:
        for given, inp in self.inputs:
            if real == inp or os.path.isdir(inp) and _inside(real, inp):
                what = "is" if real == inp else "is inside"
                raise OutputError(f"{flag} {path} {what} the input {given}; writing it would destroy what this "
                                  "command reads (--overwrite never allows that): choose another name")
        owner = run_owner(real)
        if owner:
            raise OutputError(f"{flag} {path}: {owner[1]} belongs to the run folder {owner[0]}; a command never "
                              "writes over a run's own files (--overwrite does not allow it): choose a name "
                              "outside them")

    def check_file(self, path: str | None, flag: str) -> None:
        """Before any work: `path` may be written as a whole file by this command ("-"/None: stdout)."""
        if path in (None, "-"):
            return
        if not str(path).strip():
            raise OutputError(f"{flag} is empty; give a file name")
        real = _real(path)
        self._not_input(path, flag, real)
        if os.path.isdir(path):
            raise OutputError(f"{flag} {path} is a folder; give a file name")
        if os.path.lexists(path) and not self.overwrite and real not in self.created:
            raise OutputError(f"{flag} {path} exists; pass --overwrite to replace it, or choose another name")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise OutputError(f"{flag} {path}: the folder {parent} does not exist; create it first")

    def check_folder(self, path: str | None, flag: str) -> None:
        """Before any work: a folder this command writes its own files into (a report)."""
        if path in (None, "-"):
            return
        if not str(path).strip():
            raise OutputError(f"{flag} is empty; give a folder name")
        real = _real(path)
        self._not_input(path, flag, real)
        if is_run_folder(real):
            raise OutputError(f"{flag} {path} is a run folder; a report there would write over the run's own "
                              f"files: give a new folder (e.g. {os.path.join(path, 'report')})")
        for given, inp in self.inputs:
            if _inside(inp, real):
                raise OutputError(f"{flag} {path} holds the input {given}; write the report into a folder of its "
                                  "own")
        if os.path.lexists(path) and not os.path.isdir(path):
            raise OutputError(f"{flag} {path} exists and is not a folder; give a folder name")
        if os.path.isdir(path) and os.listdir(path) and not self.overwrite:
            raise OutputError(f"{flag} {path} exists and is not empty; pass --overwrite to replace the files this "
                              "command writes there (nothing else is touched), or choose another folder")

    def claim(self, path: str, flag: str = "output") -> str:
        """Check `path` as written now (a sub-file of a checked folder included) and note it as ours."""
        self.check_file(path, flag)
        self.created.add(_real(path))
        return path

    @contextlib.contextmanager
    def staged(self, path: str, flag: str = "output"):
        """A temporary name beside `path` (same extension, for writers that go by it) renamed onto `path`
        when the block succeeds; removed on any failure or interruption."""
        self.claim(path, flag)
        folder, name = os.path.split(os.path.abspath(path))
        stem, dot, ext = name.partition(".")
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".partial{dot}{ext}", dir=folder)
        os.close(fd)
        try:
            with interruptible():  # SIGTERM too removes the temporary file
                yield tmp
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise

    @contextlib.contextmanager
    def open(self, path: str | None, mode: str = "w", flag: str = "output"):
        """A file handle whose content replaces `path` only when the block succeeds ("-"/None: stdout)."""
        if path in (None, "-"):
            yield sys.stdout
            return
        with self.staged(path, flag) as tmp, open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def advisory_lock(lock_file: str, shown: str, what: str, advice: str):
    """Hold an advisory `fcntl` lock on `lock_file` for as long as the returned handle stays open; a second live
    holder gets LockedError: "<shown>: <holder> is <what> right now; <advice>". Release with `release_lock`."""
    import fcntl

    os.makedirs(os.path.dirname(os.path.abspath(lock_file)), exist_ok=True)
    while True:
        fh = open(lock_file, "a+")  # noqa: SIM115 - held open: closing drops the lock
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise LockedError(f"{shown}: {holder} is {what} right now; {advice}") from None
        try:
            same = os.path.samestat(os.fstat(fh.fileno()), os.stat(lock_file))
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # its holder removed the file between our open and our lock: lock the new one
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    fh.flush()
    return fh


def release_lock(fh, remove: bool = False) -> None:
    """Drop a lock taken by `advisory_lock`; `remove` deletes its file first (while still holding it)."""
    if fh is None or fh.closed:
        return
    if remove:
        with contextlib.suppress(OSError):
            os.remove(fh.name)
    fh.close()
