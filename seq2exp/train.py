"""`python -m seq2exp.train --model crmnet|legnet|cnn_bilstm|macaron`: train any registered model."""
import sys

from seq2exp.cli.commands import train_main

if __name__ == "__main__":
    sys.exit(train_main(model=None))
