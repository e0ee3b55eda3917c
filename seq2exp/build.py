"""`python -m seq2exp.build` / `seq2exp-build`: see seq2exp.cli.commands.build_main."""
import sys

from seq2exp.cli.commands import build_main

if __name__ == "__main__":
    sys.exit(build_main())
