"""`import seq2exp`: the public names, no backend imported, one version, and `keras.saving.load_model` reading
every registered model's .keras file whichever of keras / seq2exp is imported first (fresh processes)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from seq2exp.engine.registry import model_names

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_import_seq2exp_imports_no_backend_and_exports_the_api():
    out = json.loads(_python("""
        import importlib.util, json, sys, types
        import seq2exp
        import data_prep.errors
        result = {"heavy": [m for m in ("keras", "tensorflow", "jax") if m in sys.modules],
                  "version": seq2exp.__version__, "all": sorted(seq2exp.__all__),
                  "listed": all(name in dir(seq2exp) for name in seq2exp.__all__),
                  "error": seq2exp.Seq2ExpError is data_prep.errors.Seq2ExpError}
        try:
            seq2exp.no_such_name
        except AttributeError as err:
            result["unknown"] = str(err)
        import seq2exp.cli.commands, seq2exp.train  # what `python -m seq2exp.train` / seq2exp-train import
        result["heavy_after_cli"] = [m for m in ("keras", "tensorflow", "jax") if m in sys.modules]
        # the module `seq2exp.train` (python -m) must not hide the function seq2exp.train
        result["train_shadowed"] = isinstance(vars(seq2exp).get("train"), types.ModuleType)
        if importlib.util.find_spec("seq2exp.api.training") is not None:
            result["train_callable"] = callable(seq2exp.train) and not isinstance(seq2exp.train, types.ModuleType)
        print(json.dumps(result))
    """))
    assert out["heavy"] == [] and out["heavy_after_cli"] == [], out
    assert out["all"] == sorted(["__version__", "models", "build_model", "train", "Run", "load_run", "Predictor",
                                 "Seq2ExpError"]) and out["listed"] and out["error"]
    assert out["unknown"] == "module 'seq2exp' has no attribute 'no_such_name'"
    assert not out["train_shadowed"] and out.get("train_callable", True)


def test_the_version_has_one_place():
    from setuptools.config.setupcfg import read_configuration

    import seq2exp
    from seq2exp._version import __version__

    assert seq2exp.__version__ == __version__ == "0.2.0"
    assert read_configuration(str(ROOT / "setup.cfg"))["metadata"]["version"] == __version__


#: registering layers does not depend on the backend: Keras's numpy backend builds and loads without compiling
NUMPY = 'import os; os.environ["KERAS_BACKEND"] = "numpy"'


@pytest.mark.tf_free
def test_keras_loads_every_model_file_after_import_seq2exp(tmp_path):
    """Either import order (TensorFlow blocked); without seq2exp the same files do not load (control)."""
    from tests.engine.test_tf_free import check, run_without_tf

    files = {name: str(tmp_path / f"{name}.keras") for name in model_names()}
    # keras first imported from inside a half-imported seq2exp module: the layers still register at once
    out = check(run_without_tf(NUMPY + "\n" + textwrap.dedent(f"""
        import seq2exp, seq2exp.engine.losses, keras
        assert keras.backend.backend() == "numpy"
        packages = sorted({{k.partition(">")[0] for k in keras.saving.get_custom_objects()}})
        print("packages", packages)
        for name, file in {files!r}.items():
            seq2exp.build_model(name, "tiny").save(file)
    """)))
    assert "packages ['crmnet', 'dream_peers', 'legnet_tf', 'seq2exp']" in out, out
    load = f"""
        loaded, failed = [], []
        for name, file in {files!r}.items():
            try:
                model = keras.saving.load_model(file, safe_mode=True)
                loaded.append(name if model.name == name else model.name)
            except TypeError as err:
                failed.append(name if "Could not locate class" in str(err) else str(err)[:200])
        print("loaded", sorted(loaded), "failed", sorted(failed))
    """
    def child(*parts: str) -> str:
        return check(run_without_tf("\n".join(textwrap.dedent(part) for part in (NUMPY, *parts))))

    seq2exp_first = child("""
        import sys
        import seq2exp
        assert "keras" not in sys.modules
        import keras
    """, load)
    keras_first = child("""
        import sys
        import keras
        assert not [m for m in sys.modules if m.split(".")[0] in ("seq2exp", "crmnet", "legnet_tf", "dream_peers")]
    """, load, "import seq2exp", load)
    names = sorted(files)
    assert f"loaded {names} failed []" in seq2exp_first, seq2exp_first
    assert keras_first.splitlines() == [f"loaded [] failed {names}", f"loaded {names} failed []"], keras_first
