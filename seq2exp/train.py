"""`python -m seq2exp.train --model NAME` / `seq2exp-train`: the train command for any registered model."""
import sys

from seq2exp.cli.commands import train_main

if __name__ == "__main__":
    sys.exit(train_main())
