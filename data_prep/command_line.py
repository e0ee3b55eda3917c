"""The argument parser every command line of the project builds on (data_prep.build, the seq2exp commands, the
converters, the benchmarks): it never guesses.

- no prefix matching (`--epoch 3` is not taken as `--epochs 3`, `--model legnet` not as `--model-config`);
- an unknown flag is one line naming the closest valid one ("--modle: unknown flag; did you mean --model?");
- every error is one line with exit 2.
It lives in the lowest layer so that the model packages' converters and the benchmarks can use it too.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import sys

from data_prep.errors import Seq2ExpError


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations, with one-line errors that suggest the flag meant."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def flags(self) -> list[str]:
        return sorted({s for a in self._actions for s in a.option_strings if s.startswith("--")})

    def parse_args(self, args=None, namespace=None):
        known, unknown = self.parse_known_args(args, namespace)
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
