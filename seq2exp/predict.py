"""`python -m seq2exp.predict --model crmnet|legnet|cnn_bilstm|macaron`: predictions of any registered model."""
import sys

from seq2exp.cli.commands import predict_main

if __name__ == "__main__":
    sys.exit(predict_main(model=None))
