import os
import sys

import jax
import pytest

sys.path.insert(0, os.path.dirname(__file__))

# The suite checks float32 arithmetic against references at float32 tolerances. On recent NVIDIA
# GPUs JAX computes float32 matrix products in TF32 by default (about 1e-3 relative), so the tests
# ask for full float32 products; on the CPU, where products are always float32, this changes nothing.
jax.config.update("jax_default_matmul_precision", "highest")


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


def _env_dir(var: str, what: str) -> str:
    path = os.environ.get(var)
    if not path:
        pytest.skip(f"{var} is not set: point it at {what}")
    if not os.path.isdir(path):
        pytest.skip(f"{var}={path} is not a folder")
    return path


@pytest.fixture
def mnist_dir():
    """The MNIST folder from FNNET_DATA_DIR; skips the test when it is not set."""
    return _env_dir("FNNET_DATA_DIR", "a folder with the four MNIST IDX files")


@pytest.fixture
def book_weights_dir():
    """The book's weights folder from FNNET_BOOK_WEIGHTS_DIR; skips the test when it is not set."""
    return _env_dir("FNNET_BOOK_WEIGHTS_DIR", "the folder with the book's params.pkl and sample_weight.pkl")


def pytest_sessionfinish(session):
    """Under pytest-xdist, a worker hands its gradient-check figures to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        from gradcheck import MEASURED

        workeroutput["gradcheck"] = {test: list(errs) for test, errs in MEASURED.items()}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist controller: merge a finished worker's gradient-check figures."""
    from gradcheck import record

    for test, (vjp, num) in getattr(node, "workeroutput", {}).get("gradcheck", {}).items():
        record(vjp, num, test)


def pytest_terminal_summary(terminalreporter):
    """The largest relative errors of the three-way gradient checks that ran."""
    from gradcheck import MEASURED

    if not MEASURED:
        return
    terminalreporter.section("largest gradient discrepancies (relative)")
    terminalreporter.write_line("hand-written backward vs jax.vjp / jax.grad, and vs numerical (float64)")
    terminalreporter.write_line(f"{'test':84s} {'vs jax':>11s} {'vs numerical':>13s}")
    for test, (vjp, num) in sorted(MEASURED.items()):
        terminalreporter.write_line(f"{test:84s} {vjp:11.2e} {num:13.2e}")
