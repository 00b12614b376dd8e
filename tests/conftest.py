"""Shared fixtures. Real sample data is read from ../shared/data (never copied here)."""
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("MXPOSE_SHARED_DATA",
                             os.path.join(os.path.dirname(ROOT), "shared", "data"))


def _need(sub):
    p = os.path.join(SHARED_DATA, sub)
    if not os.path.exists(p):
        pytest.skip(f"sample data {p} is absent (set MXPOSE_SHARED_DATA to ../shared/data)")
    return p


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; skips the test when it is absent."""
    return _need("")


@pytest.fixture(scope="session")
def coco_sample():
    """Folder with 4 COCO val2017 images and test_coco.json."""
    return _need("coco_sample")


@pytest.fixture(scope="session")
def mpii_sample():
    """Folder with 5 MPII images and test_mpii.json (0-based joints)."""
    return _need("mpii_sample")


@pytest.fixture(scope="session")
def openpose_models():
    return _need("openpose_models")


@pytest.fixture(scope="session")
def media():
    return _need("media")


@pytest.fixture(scope="session")
def repo_root():
    return ROOT
