"""`python -m legnet_tf.train` / `legnet-train`: the engine's train command for legnet."""
import sys

from seq2exp.cli.commands import train_main


def main(argv=None) -> int:
    return train_main(argv, model="legnet")


if __name__ == "__main__":
    sys.exit(main())
