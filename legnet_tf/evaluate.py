"""`python -m legnet_tf.evaluate`: the shared engine's evaluate command for LegNet."""
import sys

from seq2exp.cli.commands import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main(model="legnet"))
