import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """One XDG cache for the test session, so no test reads or writes the user's ~/.cache/fnnet."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture
def mnist_dir():
    """The MNIST folder from FNNET_DATA_DIR; skips the test when it is not set."""
    path = os.environ.get("FNNET_DATA_DIR")
    if not path:
        pytest.skip("FNNET_DATA_DIR is not set: point it at a folder with the four MNIST IDX files")
    if not os.path.isdir(path):
        pytest.skip(f"FNNET_DATA_DIR={path} is not a folder")
    return path
