"""Shared test fixtures and the one rule for optional dependencies.

A test that guards a claim never skips silently in CI. Locally a missing optional package (torch,
tensorly, jax, tf_keras, tfrecord) or a missing ../shared folder skips the tests that need it; under CI
(`CI` set to true/1/yes, or `REQUIRE_SHARED_DATA=1`, which `.ci/run` sets) the same absence FAILS them.
Use `require_module("torch")` (or `require_installed` when it must not be imported here) instead of
`pytest.importorskip`, and the `shared_data` / `shared_specs`
fixtures (or `require_shared_specs()`) instead of `if path.is_file():`.
"""
import importlib
import importlib.util
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
SHARED_SPECS = Path(os.environ.get("SHARED_SPECS", ROOT.parent / "shared" / "specs"))


def strict() -> bool:
    """True under CI: what a claim-guarding test needs must be present, or the test fails."""
    return (os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
            or os.environ.get("REQUIRE_SHARED_DATA") == "1")


def missing(what: str, hint: str) -> None:
    """Skip locally, fail under CI (usable at module level and inside tests)."""
    if strict():
        pytest.fail(f"{what} is required under CI (CI / REQUIRE_SHARED_DATA=1): {hint}", pytrace=False)
    pytest.skip(f"{what}: {hint}", allow_module_level=True)


def require_module(name: str, hint: str = ""):
    """`pytest.importorskip` locally; under CI a module that will not import fails the test."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        missing(f"module {name}", hint or f"{err}; pip install it (.ci/run installs it)")


def require_installed(name: str, hint: str = "") -> None:
    """Like `require_module`, without importing it (for a package a test runs in a subprocess, or one whose
    import would clash with what the test process has loaded)."""
    if importlib.util.find_spec(name) is None:
        missing(f"module {name}", hint or "not installed; pip install it (.ci/run installs it)")


def require_shared_specs() -> Path:
    """The published-model specs folder ../shared/specs (the facts our pins are checked against)."""
    if not (SHARED_SPECS / "legnet_reference_state_dict.json").is_file():
        missing(f"specs folder {SHARED_SPECS}", "the published specs must sit beside the project")
    return SHARED_SPECS


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real measured data in ../shared/data; skipped only when absent, a failure under CI."""
    if not SHARED_DATA.is_dir():
        missing(f"real data folder {SHARED_DATA}", "it must sit beside the project")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_specs() -> Path:
    return require_shared_specs()
