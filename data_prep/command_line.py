"""The argument parser every command line of the project builds on (data_prep.build, the seq2exp commands, the
converters, the benchmarks): it never guesses.

- no prefix matching (`--epoch 3` is not taken as `--epochs 3`, `--model legnet` not as `--model-config`);
- an unknown flag is one line naming the closest valid one ("--modle: unknown flag; did you mean --model?");
- every error is one line with exit 2;
- TensorFlow starts without its C++ start-up lines unless --verbose (`quiet_tensorflow`).
It lives in the lowest layer so that the model packages' converters and the benchmarks can use it too.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import json
import logging
import os
import sys
import tempfile

from data_prep.errors import Seq2ExpError


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations, with one-line errors that suggest the flag meant."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def flags(self) -> list[str]:
        return sorted({s for a in self._actions for s in a.option_strings if s.startswith("--")})

    def parse_args(self, args=None, namespace=None):
        given = sys.argv[1:] if args is None else list(args)
        flags = set(self.flags())
        for arg in given[:given.index("--")] if "--" in given else given:  # named before "required" errors
            if arg.startswith("--") and arg.split("=", 1)[0] not in flags:
                self.error(self.unknown_message([arg]))
        known, unknown = self.parse_known_args(given, namespace)
        if unknown:
            self.error(self.unknown_message(unknown))
        return known

    def unknown_message(self, unknown: list[str]) -> str:
        """The first unknown flag with the closest valid one; a stray value as argparse would name it."""
        for arg in unknown:
            if arg.startswith("-") and len(arg) > 1 and not _number(arg):
                flag = arg.split("=", 1)[0]
                close = difflib.get_close_matches(flag, self.flags(), n=1, cutoff=0.6)
                prefix = [f for f in self.flags() if f.startswith(flag)] if flag.startswith("--") else []
                hint = close or prefix[:1]
                return f"{flag}: unknown flag" + (f"; did you mean {hint[0]}?" if hint else "")
        return f"unrecognized arguments: {' '.join(unknown)}"

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def one_line_errors(prog: str):
    """Decorate a command's main(): an error the user acts on (Seq2ExpError: a refused output, a bad input) is
    one line on stderr and exit 2, not a traceback."""
    def wrap(main):
        @functools.wraps(main)
        def run(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except Seq2ExpError as err:
                print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
                return 2
        return run
    return wrap


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
    INFO/WARNING lines away, and what the import and the first device listing (CUDA's cuInit) write to
    file descriptor 2 goes to a temporary file that is shown only if they fail. Under any other Keras backend (JAX)
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
            import tensorflow

            # the first device listing initialises CUDA: on a machine without a GPU that prints the
            # `E0000 ... cuInit ... UNKNOWN ERROR (303)` line, so it happens here, out of sight, once
            tensorflow.config.list_physical_devices()
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
