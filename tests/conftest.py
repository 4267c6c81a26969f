"""Shared fixtures: the development data beside the checkout, and the pack loaded as a package."""
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# ../shared/data beside the project root (CI has it; a user's machine usually not).
SHARED_DATA = Path(os.environ.get("DEEPOT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
REQUIRE_SHARED_DATA = os.environ.get("DEEPOT_REQUIRE_SHARED_DATA") == "1"


def shared_data_or_skip() -> Path:
    """Return the development-data folder, skip when absent, fail when CI requires it."""
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    message = f"development data not found at {SHARED_DATA}"
    if REQUIRE_SHARED_DATA:
        pytest.fail(message + " (DEEPOT_REQUIRE_SHARED_DATA=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_data_or_skip()
