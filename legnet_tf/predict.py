"""`python -m legnet_tf.predict` / `legnet-predict`: the shared engine's predict command with the model fixed to legnet."""
import sys

from seq2exp.cli.commands import predict_main


def main(argv=None) -> int:
    return predict_main(argv, model="legnet")


if __name__ == "__main__":
    sys.exit(main())
