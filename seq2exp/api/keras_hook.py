"""After `import seq2exp`, `keras.saving.load_model(file, safe_mode=True)` reads any project `.keras` file.

Keras finds a custom layer only once the package defining it was imported, so a model file fails with an
opaque "Could not locate class" TypeError unless its model package happened to be imported. `import
seq2exp` must not import Keras (the commands check their flags before TensorFlow starts), so:

* Keras already imported: the model packages are imported at once (their layers register);
* otherwise a `sys.meta_path` finder wraps the loader of `keras`, so the model packages are imported
  right after `keras` finishes importing, whoever imports it.

A model package must import its layers when it is imported with Keras loaded (crmnet, legnet_tf and
dream_peers do). Importing every model package takes ~0.1 s on top of Keras's seconds.
"""
from __future__ import annotations

import sys

_installed = False


def register_models() -> None:
    """Import every declared model's package (each imports its layers when Keras is loaded), then its
    registry entry.

    A registry entry may not import yet: the keras import that led here may come from inside a
    half-initialised module it needs (`import seq2exp.engine.losses` -> `import keras`); it is skipped as
    `load_all_models` skips it, and the registry imports it when asked. The packages themselves need
    only Keras and seq2exp.layers, so the layers are registered in any case.
    """
    import importlib

    from seq2exp.engine.registry import declared_models, get_model_spec

    for name, target in sorted(declared_models().items()):
        try:
            importlib.import_module(target.partition(".")[0])
            get_model_spec(name)
        except (ImportError, AttributeError):  # a missing optional dependency; a half-initialised module
            pass


class _KerasLoader:  # duck-typed: importlib.abc alone costs the commands 8 ms
    """The original loader of `keras`, then `register_models`."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        register_models()

    def __getattr__(self, name):  # get_resource_reader, get_source, is_package, ...
        return getattr(self._loader, name)


class _KerasFinder:
    """Finds `keras` as the other finders would, with its loader wrapped; used once, then removed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec("keras")
        if spec is not None and spec.loader is not None:
            spec.loader = _KerasLoader(spec.loader)
        return spec


def install() -> None:
    """Register the models now if Keras is imported, else as soon as it is (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    if "keras" in sys.modules:
        register_models()
    else:
        sys.meta_path.insert(0, _KerasFinder())
