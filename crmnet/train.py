"""`python -m crmnet.train` / `crmnet-train`: the shared engine's train command with the model fixed to crmnet."""
import sys

from seq2exp.cli.commands import train_main


def main(argv=None) -> int:
    return train_main(argv, model="crmnet")


if __name__ == "__main__":
    sys.exit(main())
