"""`python -m crmnet.train` / `crmnet-train`: the engine's train command for crmnet."""
import sys

from seq2exp.cli.commands import train_main


def main(argv=None) -> int:
    return train_main(argv, model="crmnet")


if __name__ == "__main__":
    sys.exit(main())
