"""`python -m legnet_tf.evaluate` / `legnet-evaluate`: the engine's evaluate command for legnet."""
import sys

from seq2exp.cli.commands import evaluate_main


def main(argv=None) -> int:
    return evaluate_main(argv, model="legnet")


if __name__ == "__main__":
    sys.exit(main())
