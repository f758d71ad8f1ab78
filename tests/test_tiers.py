"""The test session's own set-up (tests/conftest.py) keeps its promises: the tiers are what pyproject
says, one JAX compilation cache outside the repository reaches the processes the tests start, the
pages run at XLA's default settings, and reconfiguring logging under output capture breaks nothing."""

import logging.config
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from doc_examples import FAST_COMPILE_FLAG, page_env

ROOT = Path(__file__).resolve().parent.parent


def test_the_default_selection_is_the_fast_tier(pytestconfig):
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    markers = re.findall(r'^    "(\w+): ', config, flags=re.M)
    assert markers == ["slow", "mnist", "pages", "notebooks", "browser"]
    addopts = re.search(r"^addopts = \"(.*)\"$", config, flags=re.M).group(1)
    default = re.search(r"-m '([^']*)'", addopts).group(1)
    assert default == " and ".join(f"not {m}" for m in markers)
    assert "--dist loadgroup" in addopts


def test_a_test_that_takes_mnist_dir_is_in_the_mnist_tier(request, pytestconfig):
    items = [i for i in request.session.items if "mnist_dir" in getattr(i, "fixturenames", ())]
    assert all(i.get_closest_marker("mnist") for i in items)
    if "not mnist" in (pytestconfig.getoption("markexpr") or ""):
        assert not items, [i.nodeid for i in items]


def test_one_compile_cache_outside_the_repository_reaches_the_processes_tests_start(tmp_path):
    folder = Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    assert folder.is_dir() and ROOT not in folder.resolve().parents
    assert jax.config.jax_compilation_cache_dir == str(folder)
    before = set(folder.rglob("*"))
    # A program no other test compiles (its constant is this test's own), compiled in a fresh process
    # in well under a second: it is written to the session's cache all the same.
    code = "import jax, jax.numpy as jnp; print(jax.jit(lambda x: x * 3 + 20231204)(jnp.arange(7)).sum())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0 and proc.stdout.strip() == str(sum(3 * i + 20231204 for i in range(7)))
    assert set(folder.rglob("*")) - before, "the subprocess wrote nothing to the session's compile cache"


def test_the_fast_tier_compiles_quickly_and_the_pages_run_at_xla_defaults(pytestconfig, monkeypatch):
    if re.search(r"\bnot\s+slow\b", pytestconfig.getoption("markexpr") or ""):
        # FAST_COMPILE_FLAG, unless the XLA_FLAGS this session was started with names a level itself
        assert "--xla_backend_optimization_level=" in os.environ.get("XLA_FLAGS", "")
    monkeypatch.setenv("XLA_FLAGS", f"--xla_force_host_platform_device_count=2 {FAST_COMPILE_FLAG}")
    assert page_env()["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    monkeypatch.setenv("XLA_FLAGS", FAST_COMPILE_FLAG)
    assert "XLA_FLAGS" not in page_env()


def test_reconfiguring_logging_under_capture_leaves_pytests_capture_open(capfd):
    """uvicorn configures logging at every server start; absl's handler used to close the stream it
    was made with (pytest's capture file at import), which failed every later test of the process."""
    absl_logging = pytest.importorskip("absl.logging")
    stream = absl_logging.get_absl_handler().python_handler.stream
    assert stream is sys.__stderr__  # which absl never closes; not the capture of whatever was running
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    assert not stream.closed
    print("still captured", file=sys.stderr)
    assert capfd.readouterr().err == "still captured\n"
