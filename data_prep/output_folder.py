"""The build's output folder: which folders may be replaced, the atomic swap, and cleanup on any exit.

A build writes `<out>.building-<pid>` and swaps it in whole. Only a folder that really is an earlier
build (our manifest format, nothing in it a build would not write) is ever replaced, so no unrelated
file is deleted; an input inside the output folder is refused. SIGTERM/SIGHUP become an exception in
the main thread (only where nobody else handles them), so the temporary folder is removed on the way
out, and the two renames of the swap run with those signals held back.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import threading

from data_prep.errors import BuildError, BuildInterrupted
from data_prep.manifest import FORMAT, MANIFEST

_OWN_FILES = {MANIFEST, "rejected.tsv", MANIFEST + ".partial"}
_SHARD = re.compile(r"^[A-Za-z0-9_]+-\d{5}\.tfrecord(\.partial)?$")
_MANIFEST_KEYS = {"format", "schema", "splits", "counts"}
_HELD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def output_path(out: str) -> str:
    """`out` without a trailing slash (tab completion), through a symlink to the real folder."""
    if not str(out).strip():
        raise BuildError("--out is empty; give the output folder")
    out = os.path.normpath(os.fspath(out))
    return os.path.realpath(out) if os.path.islink(out) else out


def _listed_files(manifest: dict) -> set[str]:
    """Every `file` named anywhere in a manifest (shards, and whatever later formats list)."""
    found, stack = set(), [manifest]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("file"), str):
                found.add(item["file"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def check_output(out: str, inputs: list[str]) -> None:
    """Refuse an output folder a build must not replace, before any work starts."""
    real_out = os.path.realpath(out)
    for path in inputs:
        real = os.path.realpath(path)
        if real == real_out:
            raise BuildError(f"--out {out} is an input file; give a new folder for the output")
        if os.path.commonpath([real, real_out]) == real_out:
            raise BuildError(f"input {path} is inside the output folder {out}, which a build replaces whole; "
                             "move the input out of it or choose another --out")
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise BuildError(f"{out}: exists and is not a folder")
        entries = os.listdir(out)
        if entries:
            _check_earlier_build(out, entries)
    parent = os.path.dirname(os.path.abspath(out)) or "."
    os.makedirs(parent, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise BuildError(f"{parent}: output location is not writable")


def _check_earlier_build(out: str, entries: list[str]) -> None:
    mpath = os.path.join(out, MANIFEST)
    if MANIFEST not in entries:
        raise BuildError(f"{out}: exists, is not empty and holds no {MANIFEST}; refusing to replace it "
                         "(choose another --out)")
    try:
        with open(mpath) as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as err:
        raise BuildError(f"{mpath}: unreadable ({err}); {out} is not a data_prep.build output that can be "
                         "replaced: choose another --out") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not _MANIFEST_KEYS <= set(manifest):
        raise BuildError(f"{mpath}: not a data_prep.build output (format {FORMAT!r} with "
                         f"{', '.join(sorted(_MANIFEST_KEYS))}); refusing to replace {out}: choose another --out")
    allowed = _OWN_FILES | _listed_files(manifest)
    foreign = sorted(e + ("/" if os.path.isdir(os.path.join(out, e)) and not os.path.islink(os.path.join(out, e))
                          else "") for e in entries if e not in allowed and not _SHARD.match(e))
    if foreign:
        shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
        raise BuildError(f"{out}: an earlier build, but it also holds files a build does not write ({shown}); "
                         "refusing to replace it: move them out or choose another --out")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(out: str) -> list[str]:
    """Remove `<out>.building-PID` / `<out>.old-PID` folders left by builds whose process is gone (kill -9)."""
    parent, base = os.path.split(os.path.abspath(out))
    pattern = re.compile(re.escape(base) + r"\.(building|old)-(\d+)$")
    removed = []
    for name in os.listdir(parent or "."):
        m = pattern.match(name)
        if m and int(m.group(2)) != os.getpid() and not _alive(int(m.group(2))):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            removed.append(name)
    return removed


def swap_in(tmp: str, out: str) -> None:
    """Replace `out` by `tmp` whole: a reader never sees old and new shards mixed, a signal never leaves
    `out` missing (the renames run with signals held back)."""
    old = f"{out}.old-{os.getpid()}"
    held = threading.current_thread() is threading.main_thread()
    if held:
        signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        if os.path.exists(out):
            os.rename(out, old)
        os.rename(tmp, out)
    finally:
        if held:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def interruptible():
    """SIGTERM/SIGHUP raise BuildInterrupted (like Ctrl-C raises KeyboardInterrupt) while the build runs,
    unless the program already handles them; a second signal during the cleanup is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        raise BuildInterrupted(signum)

    for s in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(s) == signal.SIG_DFL:
            previous[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
