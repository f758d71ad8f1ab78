import os
import re
import shutil
import sys
import tempfile

import jax
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from doc_examples import FAST_COMPILE_FLAG  # noqa: E402  (tests/ is importable from here on)

# absl (chex's logging) makes a handler that writes to the sys.stderr of the moment it is imported and
# closes that stream when logging is configured again (logging.config.dictConfig, as uvicorn does at
# every server start) unless it is the sys.stderr of that later moment. Under pytest's output capture
# the two differ, and absl would close pytest's capture file, failing every later test of the process.
# The handler writes to the process's own stderr instead, which absl never closes.
try:
    from absl import logging as absl_logging
except ImportError:
    absl_logging = None
if absl_logging is not None:
    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__

# The suite checks float32 arithmetic against references at float32 tolerances. On recent NVIDIA
# GPUs JAX computes float32 matrix products in TF32 by default (about 1e-3 relative), so the tests
# ask for full float32 products; on the CPU, where products are always float32, this changes nothing.
jax.config.update("jax_default_matmul_precision", "highest")

# The fast tier's programs are small: each is compiled once and runs for milliseconds, so compiling is
# most of its time, and most of compiling is LLVM optimising the machine code. A session that leaves the
# slow tier out (the default selection, `-m 'not slow ...'`) therefore compiles with LLVM's optimisation
# off: measured, 28% less CPU time for the fast tier. The slow tier runs long computations, which that
# would make slower (a full-size gradient check: 1.8 times), so it runs at XLA's default. XLA's
# optimisations of the program itself (fusion, simplification) stay on either way; results agree with
# the default's to float32 rounding, not bit for bit, so the pages, whose printed digits are compared,
# always run at the default (tests/doc_examples.py, page_env). Set before JAX starts its backend, it
# reaches the processes the tests start; an XLA_FLAGS that names a level already is left as it is.
def _fast_compile(config) -> None:
    if re.search(r"\bnot\s+slow\b", config.getoption("markexpr") or "") and \
            "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_FLAG}".strip()


# One JAX persistent compilation cache for the whole test session: the pytest-xdist workers and every
# process the tests start (the `fnnet` command, the pages' runner, notebook kernels) compile the same
# small programs over and over, and each compiles in a fraction of a second, so every compile is kept.
# The folder is a temporary one made by the first pytest process and removed when it ends, unless
# JAX_COMPILATION_CACHE_DIR already names one (CI shares one across its tiers); never the repository.
# FNNET_COMPILE_CACHE=0 keeps `fnnet` from pointing its processes at fnnet's own cache folder, which the
# tests make anew for each test; the one test of that cache turns it back on.
_CACHE_ENV = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
              "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0", "FNNET_COMPILE_CACHE": "0"}
_OWN_CACHE = None


def pytest_configure(config):
    global _OWN_CACHE
    _fast_compile(config)
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # set already in pytest-xdist's workers
        _OWN_CACHE = tempfile.mkdtemp(prefix="fnnet-tests-jax-cache-")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
    os.environ.update(_CACHE_ENV)
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """A test that takes the mnist_dir fixture is in the mnist tier, marked or not, so that -m selects it."""
    for item in items:
        if "mnist_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.mnist)


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
