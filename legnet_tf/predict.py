"""`python -m legnet_tf.predict` / `legnet-predict`: the engine's predict command for legnet."""
import sys

from seq2exp.cli.commands import predict_main


def main(argv=None) -> int:
    return predict_main(argv, model="legnet")


if __name__ == "__main__":
    sys.exit(main())
