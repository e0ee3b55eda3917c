"""`python -m seq2exp.evaluate --model crmnet|legnet|cnn_bilstm|macaron`: evaluate any registered model."""
import sys

from seq2exp.cli.commands import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main(model=None))
