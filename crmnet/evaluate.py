"""`python -m crmnet.evaluate` / `crmnet-evaluate`: the engine's evaluate command for crmnet."""
import sys

from seq2exp.cli.commands import evaluate_main


def main(argv=None) -> int:
    return evaluate_main(argv, model="crmnet")


if __name__ == "__main__":
    sys.exit(main())
