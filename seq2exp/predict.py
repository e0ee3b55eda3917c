"""`python -m seq2exp.predict --model NAME` / `seq2exp-predict`: the predict command for any registered model."""
import sys

from seq2exp.cli.commands import predict_main

if __name__ == "__main__":
    sys.exit(predict_main())
