"""`python -m crmnet.evaluate`: the shared engine's evaluate command for crmnet."""
import sys

from seq2exp.cli.commands import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main(model="crmnet"))
