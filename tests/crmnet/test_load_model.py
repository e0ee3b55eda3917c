"""Converted / trained ``.keras`` files load in a FRESH interpreter after a plain package import.

``crmnet.load_model`` and ``legnet_tf.load_model`` (safe mode on), and ``keras.saving.load_model``
after ``import crmnet`` / ``import legnet_tf``, each in its own subprocess: nothing registered by
this test process can help them.
"""
import keras
import numpy as np
import pytest

from crmnet import CRMnetConfig, build_crmnet
from legnet_tf import LegNetConfig, build_legnet
from tests.crmnet.keras2_fixture import run
from tests.helpers import random_codes

LOADERS = {
    "package": "import {pkg}\nmodel = {pkg}.load_model(path)",
    "plain_keras": "import keras\nimport {pkg}\nmodel = keras.saving.load_model(path)",
}
SCRIPT = """
import sys
import numpy as np
path, inputs, out = sys.argv[1:4]
{load}
np.save(out, np.asarray(model.predict(np.load(inputs), verbose=0)))
print(type(model).__name__, model.count_params())
"""


def _saved(tmp_path, name, model, inputs):
    path, inputs_path = tmp_path / f"{name}.keras", tmp_path / f"{name}_inputs.npy"
    model.save(path)
    np.save(inputs_path, inputs)
    return path, inputs_path, keras.ops.convert_to_numpy(model(inputs, training=False))


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("load_model")
    keras.utils.set_random_seed(3)
    crmnet_codes = random_codes(4, CRMnetConfig.tiny().seq_len, seed=1)
    legnet_inputs = np.random.default_rng(2).normal(size=(4, 150, 6)).astype("float32")
    return {
        "crmnet": _saved(tmp, "crmnet", build_crmnet(CRMnetConfig.tiny()), crmnet_codes),
        "legnet_tf": _saved(tmp, "legnet", build_legnet(LegNetConfig.tiny()), legnet_inputs),
    }


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("pkg", ["crmnet", "legnet_tf"])
def test_fresh_interpreter_loads_after_package_import(saved_models, tmp_path, pkg, loader):
    path, inputs, expected = saved_models[pkg]
    script = tmp_path / "load.py"
    script.write_text(SCRIPT.format(load=LOADERS[loader].format(pkg=pkg)))
    out = tmp_path / "preds.npy"
    proc = run([str(script), str(path), str(inputs), str(out)])
    assert "Functional" in proc.stdout
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5, rtol=0)
