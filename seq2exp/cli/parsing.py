"""What every command line shares: a one-line error, its own name in `usage:`, `--verbose`, and a
TensorFlow that starts without its C++ log lines.

Flags are parsed before TensorFlow is imported, so a wrong value fails in a fraction of a second.
"""
from __future__ import annotations

import argparse
import os
import sys

from data_prep.command_line import Parser, keras_backend_name, quiet_tensorflow  # noqa: F401 (used by commands)

COMMANDS = ("train", "evaluate", "predict", "build", "report")


class CommandParser(Parser):
    """The project's parser (no abbreviations, one-line errors naming the flag meant) with `--verbose`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--verbose", action="store_true",
                          help="show TensorFlow's start-up and C++ log lines (hidden by default)")


def command_name(default: str) -> str:
    """How the user started this command: `python -m crmnet.train`, `crmnet-train`, or `default`."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name and spec.name.rsplit(".", 1)[-1] in COMMANDS:
        return f"python -m {spec.name}"
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if script.rsplit("-", 1)[-1] in COMMANDS:  # a console script (seq2exp-train, crmnet-train, ...)
        return script
    return default


