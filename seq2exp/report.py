"""`python -m seq2exp.report` / `seq2exp-report`: see seq2exp.cli.commands.report_main."""
import sys

from seq2exp.cli.commands import report_main

if __name__ == "__main__":
    sys.exit(report_main())
