"""`python -m seq2exp.evaluate --model NAME` / `seq2exp-evaluate`: the evaluate command for any registered model."""
import sys

from seq2exp.cli.commands import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
