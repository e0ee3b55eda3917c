"""What every command line shares: a one-line error, its own name in `usage:`, `--verbose`, and a
TensorFlow that starts without its C++ log lines.

Flags are parsed before TensorFlow is imported, so a wrong value fails in a fraction of a second.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile

COMMANDS = ("train", "evaluate", "predict", "build", "report")


class CommandParser(argparse.ArgumentParser):
    """argparse whose errors are one line naming the flag and, for a closed set, its valid values."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--verbose", action="store_true",
                          help="show TensorFlow's start-up and C++ log lines (hidden by default)")

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def command_name(default: str) -> str:
    """How the user started this command: `python -m crmnet.train`, `crmnet-train`, or `default`."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name and spec.name.rsplit(".", 1)[-1] in COMMANDS:
        return f"python -m {spec.name}"
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if script.rsplit("-", 1)[-1] in COMMANDS:  # a console script (seq2exp-train, crmnet-train, ...)
        return script
    return default


def keras_backend_name() -> str:
    """The backend Keras uses or will pick (KERAS_BACKEND, else its keras.json, else tensorflow), read
    without importing Keras, whose import would start TensorFlow before it is quieted."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as fh:
            return str(json.load(fh).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def quiet_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow with its C++ start-up lines (CUDA probing, CPU features, absl) out of sight.

    With `verbose` nothing is hidden. Otherwise TF_CPP_MIN_LOG_LEVEL=2 (unless set) keeps later C++
    INFO/WARNING lines away, and what the import itself writes to file descriptor 2 goes to a
    temporary file that is shown only if the import fails. Under any other Keras backend (JAX)
    TensorFlow is not imported at all: it need not be installed.
    """
    if verbose or "tensorflow" in sys.modules or keras_backend_name() != "tensorflow":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            tmp.seek(0)
            sys.stderr.write(tmp.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
