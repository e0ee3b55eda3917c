"""Files from elsewhere are data, never code: each loader refuses a file that would run code, and the
code does not run (a marker file it would create stays absent)."""
import ast
import builtins
from pathlib import Path

import pytest

from data_prep.errors import Seq2ExpError
from tests.conftest import require_module
from tests.reliability.jobs import SMALL

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("seq2exp", "data_prep", "crmnet", "legnet_tf", "dream_peers", "benchmarks")


def test_yaml_config_with_a_python_tag_is_rejected(tmp_path):
    from seq2exp.cli import config as run_config

    marker = tmp_path / "pwned"
    evil = tmp_path / "run.yaml"
    evil.write_text(f"epochs: 2\nseed: !!python/object/apply:builtins.open ['{marker}', 'w']\n")
    with pytest.raises(ValueError, match=rf"{evil}:2: not valid plain-data YAML .*python/object/apply"):
        run_config.load_file(str(evil))
    assert not marker.exists()
    bad_json = tmp_path / "run.json"
    bad_json.write_text('{"epochs": 2,\n "seed": }')
    with pytest.raises(ValueError, match=rf"{bad_json}:2: not valid JSON"):
        run_config.load_file(str(bad_json))


def _lambda_model(path: Path, marker: Path):
    import keras

    target = str(marker)
    inputs = keras.Input((112,))
    x = keras.layers.Lambda(lambda t: (open(target, "w").close(), t)[1])(inputs)  # noqa: SIM115
    keras.Model(inputs, keras.layers.Dense(1)(x)).save(path)
    marker.unlink()  # building the model ran the lambda once; loading must not run it again


def test_keras_file_with_a_lambda_layer_is_refused(tmp_path):
    from seq2exp.cli.commands import _load_model
    from seq2exp.engine.registry import get_model_spec
    from seq2exp.engine.trainer import Trainer, TrainSettings

    path, marker = tmp_path / "evil.keras", tmp_path / "pwned"
    _lambda_model(path, marker)
    trainer = Trainer(get_model_spec("crmnet"), SMALL, str(tmp_path / "run"), settings=TrainSettings(steps_per_epoch=1))
    with pytest.raises(ValueError, match=rf"{path}: cannot initialise crmnet from it: .*Lambda.*safe_mode"):
        trainer.load_weights(str(path))  # --init-from
    with pytest.raises(ValueError, match="Lambda.*safe_mode"):
        _load_model(str(path), "crmnet")  # evaluate / predict
    assert not marker.exists()
    import keras

    keras.saving.load_model(path, safe_mode=False)  # control: the payload is live when not refused
    assert marker.exists()


def test_pth_file_with_a_pickled_callable_is_refused(tmp_path):
    torch = require_module("torch", "the .pth refusal is checked with a real torch.save")
    from legnet_tf.convert import load_checkpoint

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return builtins.open, (str(marker), "w")

    path = tmp_path / "evil.pth"
    torch.save({"stem.0.weight": torch.zeros(2), "extra": Payload()}, path)
    with pytest.raises(Seq2ExpError, match=r"refused: it holds a pickled (builtins|io)\.open object") as err:
        load_checkpoint(path)
    assert "weights_only" not in str(err.value)  # torch's own advice (weights_only=False) would run the payload
    assert not marker.exists()
    torch.load(path, weights_only=False)  # control: the payload is live when not refused
    assert marker.exists()


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            attribute = isinstance(func, ast.Attribute)
            name = func.attr if attribute else getattr(func, "id", "")
            owner = getattr(func.value, "id", getattr(func.value, "attr", "")) if attribute else ""
            yield node, owner, name, {k.arg: k.value for k in node.keywords}


def _is_true(value) -> bool:
    return isinstance(value, ast.Constant) and value.value is True


def test_package_loads_untrusted_formats_only_safely():
    """Every loader call in the package code: load_model(safe_mode=True), torch.load(weights_only=True),
    yaml.safe_load, np.load without allow_pickle, no pickle/marshal/yaml.load."""
    problems = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node, owner, name, kw in _calls(ast.parse(path.read_text(), str(path))):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                if name == "load_model" and not _is_true(kw.get("safe_mode")):
                    problems.append(f"{where}: load_model without safe_mode=True")
                if owner == "torch" and name == "load" and not _is_true(kw.get("weights_only")):
                    problems.append(f"{where}: torch.load without weights_only=True")
                if owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all"):
                    problems.append(f"{where}: yaml.{name} (use yaml.safe_load)")
                if owner in ("pickle", "marshal", "dill", "cloudpickle") and name in ("load", "loads"):
                    problems.append(f"{where}: {owner}.{name}")
                if name == "load" and owner in ("np", "numpy") and _is_true(kw.get("allow_pickle")):
                    problems.append(f"{where}: np.load(allow_pickle=True)")
    assert not problems, "\n".join(problems)
