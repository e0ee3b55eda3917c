"""`python -m legnet_tf.predict`: the shared engine's predict command for LegNet."""
import sys

from seq2exp.cli.commands import predict_main

if __name__ == "__main__":
    sys.exit(predict_main(model="legnet"))
