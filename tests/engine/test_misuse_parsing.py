"""Issue 24 item 5 (the parsing part): commands never guess. No prefix matching (`--epoch 3` is not `--epochs 3`,
`crmnet.train --model legnet` is not `--model-config legnet`), an unknown flag names the closest valid one, and
TensorFlow starts without its C++ lines (the cuInit line included) unless --verbose."""
import os
import subprocess
import sys

import pytest

from seq2exp.cli.commands import evaluate_main, predict_main, report_main, train_main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _error(capsys, call) -> str:
    with pytest.raises(SystemExit) as stop:
        call()
    assert stop.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and ": error: " in err[0], err
    return err[0]


@pytest.mark.parametrize("argv,model,needle", [
    (["--epoch", "3"], "crmnet", "--epoch: unknown flag; did you mean --epochs?"),
    (["--model", "legnet"], "crmnet", "--model: unknown flag; did you mean --model-config?"),
    (["--modle", "crmnet"], None, "--modle: unknown flag; did you mean --model?"),
    (["--batch", "8"], "crmnet", "--batch: unknown flag; did you mean --batch-size?"),
    (["--epochs=2", "--lr=3"], "crmnet", "--lr: unknown flag"),
])
def test_train_flags_are_never_abbreviated(tmp_path, capsys, argv, model, needle):
    run = tmp_path / "run"
    line = _error(capsys, lambda: train_main([*argv, "--run-dir", str(run)], model=model))
    assert needle in line
    assert not run.exists()


def test_evaluate_and_predict_name_the_flag_meant(tmp_path, capsys):
    assert "--modle: unknown flag; did you mean --model?" in _error(
        capsys, lambda: evaluate_main(["run", "t.tsv", "--modle", "crmnet"]))
    assert "--predict: unknown flag; did you mean --predictions?" in _error(
        capsys, lambda: predict_main(["run", "t.tsv", "--predict", "p.tsv"]))
    assert "--metrics: unknown flag; did you mean --metrics-json?" in _error(
        capsys, lambda: evaluate_main(["run", "t.tsv", "--metrics", "m.json"]))


def test_report_help_works_and_an_unknown_report_is_one_line(capsys):
    assert report_main(["--help"]) == 0
    assert "dream PREDICTIONS --subsets JSON" in capsys.readouterr().out
    assert report_main(["drem"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "drem: unknown report" in err[0]


QUIET = """
import sys
from seq2exp.cli.parsing import quiet_tensorflow
quiet_tensorflow("--verbose" in sys.argv)
import keras, numpy as np
keras.layers.Dense(1)(np.zeros((1, 1), "float32"))  # the first device use: where the cuInit line appeared
print("done")
"""


def test_tensorflow_starts_without_cpp_lines():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(PYTHONPATH=ROOT, KERAS_BACKEND="tensorflow")
    proc = subprocess.run([sys.executable, "-c", QUIET], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
    cpp = [ln for ln in proc.stderr.splitlines() if ln[:1] in "IWEF" and ln[1:5].isdigit() or "cuInit" in ln]
    assert cpp == [], proc.stderr
