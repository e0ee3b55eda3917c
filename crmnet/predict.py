"""`python -m crmnet.predict` / `crmnet-predict`: the engine's predict command for crmnet."""
import sys

from seq2exp.cli.commands import predict_main


def main(argv=None) -> int:
    return predict_main(argv, model="crmnet")


if __name__ == "__main__":
    sys.exit(main())
