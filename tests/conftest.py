"""Shared test fixtures: the real data folder beside the project, and quiet TensorFlow."""
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real measured data in ../shared/data; skipped only when absent, a failure under CI."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"REQUIRE_SHARED_DATA=1 but {SHARED_DATA} is missing")
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA
