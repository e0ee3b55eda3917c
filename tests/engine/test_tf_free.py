"""The package without TensorFlow (issue 13 item 5): KERAS_BACKEND=jax with `import tensorflow` failing.

Each test runs a fresh interpreter whose meta-path hook makes every `tensorflow` import fail as if it
were not installed (keras then behaves as in a TF-free venv), so the checks hold in this venv (which
has TensorFlow) and in CI's TF-free one (`pip install -e '.[jax]'`, `pytest -m tf_free`) alike.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.tf_free
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: runs first in every child: `import tensorflow` (and any submodule) fails; at exit the child says
#: whether anything managed to import it anyway
HOOK = textwrap.dedent("""
    import atexit, sys
    class _NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
    sys.meta_path.insert(0, _NoTensorFlow())
    atexit.register(lambda: "tensorflow" in sys.modules and print("TENSORFLOW WAS IMPORTED", file=sys.stderr))
""")


def run_without_tf(code: str | None = None, module: list[str] | None = None, cwd: str | None = None,
                   timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -c HOOK+code`, or `python -m module...` behind the hook; JAX backend, this checkout first."""
    # XLA's CPU backend optimisations off: about half the compile time; these tests check paths, not speed
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
           "XLA_FLAGS": os.environ.get("XLA_FLAGS", "--xla_backend_optimization_level=0")}
    if module is not None:
        code = f"import runpy, sys; sys.argv = {module!r}; runpy.run_module({module[0]!r}, run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", HOOK + textwrap.dedent(code)], cwd=cwd or ROOT, env=env,
                          check=False, capture_output=True, text=True, timeout=timeout)
    assert "TENSORFLOW WAS IMPORTED" not in proc.stderr, proc.stderr[-3000:]
    return proc


def check(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, \
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    return proc.stdout


def test_the_hook_blocks_tensorflow():
    """Control: the hook really makes TensorFlow unimportable (else every test below proves nothing)."""
    out = check(run_without_tf("""
        try:
            import tensorflow
        except ModuleNotFoundError as err:
            print("blocked:", err)
        import keras
        print("backend", keras.backend.backend())
    """))
    assert "blocked:" in out and "backend jax" in out


#: the only modules that may need TensorFlow (item 5 of issue 13: everything else imports without it) ...
TF_ONLY = {"data_prep.dataset", "seq2exp.engine.backend_tf", "seq2exp.engine.checkpointing", "seq2exp.engine.step",
           "seq2exp.engine.strategy", "crmnet.convert", "crmnet.keras2_checkpoint", "crmnet.keras2_mapping"}
#: ... or PyTorch (not installed in the TF-free CI venv)
TORCH_ONLY = {"benchmarks.legnet_torch_reference"}
PACKAGES = ("data_prep", "seq2exp", "crmnet", "legnet_tf", "dream_peers", "benchmarks")


def test_import_graph_without_tensorflow():
    """Every module of the package but the TF_ONLY / TORCH_ONLY ones imports with TensorFlow unimportable
    (a new module importing TensorFlow at the top fails here), the JAX engine included."""
    out = check(run_without_tf(f"""
        import importlib, importlib.util, pkgutil
        from seq2exp.engine.registry import load_all_models
        skip, failed, names = {sorted(TF_ONLY | TORCH_ONLY)!r}, [], []
        for pkg in {PACKAGES!r}:
            names += [pkg] + [m.name for m in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + ".")]
        for name in names:
            if name in skip:
                continue
            try:
                importlib.import_module(name)
            except Exception as err:
                failed.append(f"{{name}}: {{type(err).__name__}}: {{err}}")
        print("stale", [m for m in skip if importlib.util.find_spec(m) is None])
        print("imported", len(names) - len(skip))
        print("loaded models:", sorted(s.name for s in load_all_models()))
        from seq2exp.cli.parsing import quiet_tensorflow
        quiet_tensorflow()  # every command calls it first: under JAX it must not import TensorFlow
        print("FAILED", failed)
    """))
    assert "FAILED []" in out, out
    assert "stale []" in out, out  # the exception lists name modules that exist
    assert int(out.split("imported ", 1)[1].split()[0]) > 80  # the walk found the package, not an empty tree
    assert "loaded models: ['cnn_bilstm', 'crmnet', 'legnet', 'macaron']" in out


def test_data_preflight_evaluate_predict_without_tensorflow(tmp_path):
    """build -> manifest -> numpy reader -> preflight -> evaluate/predict (API and commands), TensorFlow blocked."""
    out = check(run_without_tf(f"""
        import io, json, os
        import numpy as np
        import keras
        from data_prep.simulate import simulate, write_tsv
        from data_prep.manifest import load_manifest
        from data_prep.numpy_reader import make_numpy_reader
        from seq2exp.engine import preflight
        from seq2exp.engine.data import (ProcessInput, eval_split, input_batches, padded_batches, prepare,
                                         read_arrays)
        from seq2exp.engine.registry import get_model_spec
        from seq2exp.analysis.evaluation import evaluate_model, predict_files
        from seq2exp.cli.commands import evaluate_main, predict_main
        tmp = {str(tmp_path)!r}
        write_tsv(simulate(600, seed=1), os.path.join(tmp, "train.tsv"))
        write_tsv(simulate(150, seed=2), os.path.join(tmp, "test.tsv"))
        result = {{}}
        for name in ("crmnet", "legnet"):
            spec = get_model_spec(name)
            (train,) = prepare([os.path.join(tmp, "train.tsv")], spec.layout, os.path.join(tmp, "data"))
            (test,) = prepare([os.path.join(tmp, "test.tsv")], spec.layout, os.path.join(tmp, "data"), split="none",
                              group=False)
            # the training input the JAX engine gets: numpy batches of this process, static shapes
            reader = input_batches(train, "train", 64, ProcessInput(), training=True, seed=3, drop_remainder=True)
            shapes = {{k: v.shape for k, v in next(iter(reader)).items()}}
            model = spec.build(spec.presets["tiny"]())
            preflight.check_output_dir(os.path.join(tmp, "run_" + name))
            preflight.check_data([train, test], spec.layout, None, "sha256")
            preflight.check_model_data(model, spec, train, spec.presets["tiny"]())
            n_val = train.records("val")
            masks = [m for _, m in zip(range(40), (m for _, m in padded_batches(input_batches(
                train, "val", 32, ProcessInput(), training=False), 32)))]
            metrics = evaluate_model(model, spec, test, eval_split(test), batch_size=64)
            buf = io.StringIO()
            n_pred = predict_files(model, spec, [os.path.join(tmp, "test.tsv")], buf, batch_size=64)
            arrays = read_arrays(test, "all")
            # the evaluate and predict commands on a run folder holding this (untrained) model
            run = os.path.join(tmp, "run_" + name)
            model.save(os.path.join(run, "model.keras"))
            rc_eval = evaluate_main([run, os.path.join(tmp, "test.tsv"), "--model", name, "--batch-size", "64",
                                     "--metrics-json", os.path.join(run, "eval.json"),
                                     "--work", os.path.join(run, "w")])
            rc_pred = predict_main([run, os.path.join(tmp, "test.tsv"), "--model", name, "--batch-size", "64",
                                    "--predictions", os.path.join(run, "pred.tsv")])
            cli_eval = json.load(open(os.path.join(run, "eval.json")))
            cli_pred = open(os.path.join(run, "pred.tsv")).read().splitlines()
            result[name] = {{"reader": type(reader).__name__, "shapes": {{k: list(v) for k, v in shapes.items()}},
                            "val_rows": int(sum(m.sum() for m in masks)), "n_val": n_val,
                            "n_eval": metrics["n"], "n_pred": n_pred, "n_arrays": len(arrays["label"]),
                            "finite": bool(np.isfinite(metrics["pearson"])), "rc": [rc_eval, rc_pred],
                            "cli_eval_n": [v["n"] for v in cli_eval.values()], "cli_pred_rows": len(cli_pred) - 1,
                            "cli_pearson": list(cli_eval.values())[0]["pearson"], "pearson": metrics["pearson"]}}
        print("RESULT", json.dumps(result))
    """))
    result = json.loads(out.split("RESULT ", 1)[1])
    for name, length in (("crmnet", 112), ("legnet", 150)):
        r = result[name]
        assert r["reader"] == "NumpyReader"
        assert r["shapes"]["seq"] == [64, length] and r["shapes"]["label"] == [64]
        assert r["val_rows"] == r["n_val"] > 0  # every validation row once, padding masked
        assert r["n_eval"] == r["n_pred"] == r["n_arrays"] == 150
        assert r["finite"]
        assert r["rc"] == [0, 0] and r["cli_eval_n"] == [150] and r["cli_pred_rows"] == 150
        assert r["cli_pearson"] == pytest.approx(r["pearson"], abs=1e-6)


def test_build_train_evaluate_predict_under_jax_without_tensorflow(tmp_path):
    """The commands a user runs, under KERAS_BACKEND=jax with TensorFlow unimportable: build -> train (tiny,
    a few steps, a real run folder) in one process, then evaluate and predict from the run folder in another."""
    from data_prep.simulate import simulate, write_tsv

    write_tsv(simulate(1200, seed=3), tmp_path / "train.tsv")
    write_tsv(simulate(150, seed=4), tmp_path / "test.tsv")
    data, run = tmp_path / "data", tmp_path / "run"
    out = check(run_without_tf(f"""
        import runpy, sys
        for argv in ({["seq2exp.build", str(tmp_path / "train.tsv"), "--out", str(data), "--layout", "crmnet"]!r},
                     {["seq2exp.train", "--model", "crmnet", "--preset", "tiny", "--data", str(data), "--test",
                       str(tmp_path / "test.tsv"), "--epochs", "2", "--steps-per-epoch", "6", "--batch-size", "32",
                       "--run-dir", str(run)]!r}):
            sys.argv = argv
            try:
                runpy.run_module(argv[0], run_name="__main__")
            except SystemExit as done:
                if done.code not in (0, None):
                    raise
        import threading  # the trainer closed every epoch's and every evaluation's prefetcher itself
        print("PREFETCH THREADS", [t.name for t in threading.enumerate() if t.name == "seq2exp-prefetch"])
    """))
    assert "PREFETCH THREADS []" in out, out
    history = json.loads((run / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2] and all(np.isfinite(r["loss"]) for r in history)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["test.crmnet"]["model"]["n"] == 150
    assert (run / "model.keras").stat().st_size > 0 and (run / "checkpoints").is_dir()
    out = check(run_without_tf(f"""
        from seq2exp.cli.commands import evaluate_main, predict_main
        assert evaluate_main([{str(run)!r}, {str(tmp_path / "test.tsv")!r}, "--metrics-json",
                              {str(tmp_path / "eval.json")!r}]) == 0
        assert predict_main([{str(run)!r}, {str(tmp_path / "test.tsv")!r}, "--predictions",
                             {str(tmp_path / "pred.tsv")!r}]) == 0
    """))
    (evaluated,) = json.loads((tmp_path / "eval.json").read_text()).values()
    assert evaluated["n"] == 150 and np.isfinite(evaluated["pearson"]), out
    rows = (tmp_path / "pred.tsv").read_text().splitlines()
    assert len(rows) == 151 and all(r.split("\t")[3] for r in rows[1:])
    # the test metrics the run wrote come from the same model the commands loaded
    assert evaluated["pearson"] == pytest.approx(metrics["test"]["test.crmnet"]["model"]["pearson"], abs=1e-4)


def test_prefetch_threads_end_before_the_interpreter_finalises():
    """A device array freed by a thread while the interpreter finalises aborts the process (CI saw
    "FATAL: exception not rethrown" after a finished run), so every prefetch thread must have ended, and
    freed its batches, before finalisation: closed ones at once, open and abandoned ones at exit."""
    out = check(run_without_tf("""
        import atexit, itertools, threading
        import numpy as np

        def producers():
            return sorted(t.name for t in threading.enumerate() if t.name == "seq2exp-prefetch" and t.is_alive())

        # registered before the engine's own exit hook, so it runs after it
        atexit.register(lambda: print("AT EXIT", producers(), flush=True))
        import jax
        from seq2exp.engine.step_jax import Prefetcher

        def endless():
            return ({"x": np.full(8, i, np.float32), "id": np.array(["a"] * 8)} for i in itertools.count())

        closed = Prefetcher(endless(), jax.device_put)
        assert float(next(closed)["x"][0]) == 0.0 and "id" not in next(closed)  # in order; text stays on the host
        closed.close()
        print("AFTER CLOSE", producers(), closed._queue.qsize(), flush=True)
        with Prefetcher(endless(), jax.device_put) as scoped:
            next(scoped)
        print("AFTER WITH", producers(), flush=True)
        kept = Prefetcher(endless(), jax.device_put)  # still referenced at exit
        next(kept)
        dropped = Prefetcher(endless(), jax.device_put)  # collected without close(): its thread stops itself
        next(dropped)
        del dropped
        print("OPEN", len(producers()), flush=True)
    """))
    assert "AFTER CLOSE [] 0" in out and "AFTER WITH []" in out, out
    assert "OPEN 1" in out or "OPEN 2" in out, out  # the dropped one's thread may already have stopped
    assert "AT EXIT []" in out, out
