"""seq2exp: sequence-to-expression models for MPRA data (CRMnet, LegNet, DREAM 2022 peers) in Keras 3.

    import seq2exp
    seq2exp.models()                                  # {model name: [presets]}
    p = seq2exp.load_run("runs/demo")                 # any registered model, either backend
    p.predict(["ACGT..."])

`import seq2exp` imports no Keras, TensorFlow or JAX (the commands import `seq2exp.cli` through this
package and check their flags before TensorFlow starts): each name below loads its module on first use.
It also makes `keras.saving.load_model` read every project `.keras` file (seq2exp.api.keras_hook).
"""
import sys as _sys
import types as _types

from seq2exp._version import __version__
from seq2exp.api import keras_hook as _keras_hook

#: public name -> the module that defines it
_EXPORTS = {
    "models": "seq2exp.api.models",
    "build_model": "seq2exp.api.models",
    "train": "seq2exp.api.training",
    "Run": "seq2exp.api.training",
    "load_run": "seq2exp.api.predictor",
    "Predictor": "seq2exp.api.predictor",
    "Seq2ExpError": "data_prep.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'seq2exp' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({name for name in globals() if not name.startswith("_")} | set(__all__))


class _Package(_types.ModuleType):
    """`python -m seq2exp.train` is a module too: importing it must not replace the function `seq2exp.train`."""

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, _types.ModuleType):
            return  # the import system sets a loaded submodule on its parent; it stays in sys.modules
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
_keras_hook.install()
