"""`python -m legnet_tf.train`: the shared engine's train command for LegNet."""
import sys

from seq2exp.cli.commands import train_main

if __name__ == "__main__":
    sys.exit(train_main(model="legnet"))
