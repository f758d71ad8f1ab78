"""The chapter pages run: every ```python block of docs/chapters/chNN_*.md executes, in order, in a
fresh process, and prints exactly the ```text block that follows it; the notebooks generated from the
pages are in sync with them and (marker `notebooks`, run by `pytest -m notebooks`) execute in a
Jupyter kernel without an error, printing what the pages show."""

from __future__ import annotations

import importlib.util
import os
import warnings

import pytest
from doc_examples import (
    CHAPTERS,
    DOCS,
    SLOW_BLOCK_S,
    missing_requirements,
    normalized,
    page_blocks,
    page_env,
    run_page,
)

PAGES = sorted(CHAPTERS.glob("ch[0-9][0-9]_*.md"))
CELL_TIMEOUT_S = 120
DOCS_EXTRA = "needs the docs extra: pip install -e '.[docs]'"


def _make_notebooks():
    spec = importlib.util.spec_from_file_location("make_notebooks", DOCS / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_chapter_has_a_page():
    assert [p.name[:4] for p in PAGES] == [f"ch{n:02d}" for n in range(2, 9)]


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_the_page_runs_and_prints_what_it_shows(page, tmp_path):
    blocks = page_blocks(page)
    assert blocks, f"{page.name} has no ```python block"
    reason = missing_requirements(page)
    if reason:
        pytest.skip(reason)
    results = run_page(page, tmp_path)
    failures = []
    for block, result in zip(blocks, results, strict=False):
        where = f"{page.name}:{block.line}"
        if result.error is not None:
            failures.append(f"{where} raised:\n{result.error}")
        elif block.shown is not None and normalized(result.printed) != normalized(block.shown):
            failures.append(f"{where} printed\n{result.printed}\nbut the page shows\n{block.shown}")
        if result.seconds > SLOW_BLOCK_S:
            warnings.warn(f"{where} took {result.seconds:.1f} s (> {SLOW_BLOCK_S:.0f} s)", stacklevel=1)
    assert not failures, "\n\n".join(failures)
    assert len(results) == len(blocks)


def test_the_runner_fails_on_a_wrong_output_and_on_an_error(tmp_path):
    page = tmp_path / "ch99_probe.md"
    page.write_text("Text.\n\n```python\nx = 6 * 7\nprint(x)   \n```\n\n```text\n42\n```\n\n"
                    "```python\nprint(x + 1)\n```\nprose\n```text\nnot asserted: prose between\n```\n\n"
                    "```python\nprint(x)\n```\n```text\n41\n```\n\n```python\n1 / 0\n```\n\n"
                    "```python\nprint('never runs')\n```\n")
    blocks = page_blocks(page)
    assert [(b.line, b.shown) for b in blocks] == [(4, "42\n"), (13, None), (21, "41\n"), (28, None),
                                                   (32, None)]
    results = run_page(page, tmp_path)
    assert [r.printed for r in results] == ["42\n", "43\n", "42\n", ""]
    assert normalized(results[0].printed) == normalized(blocks[0].shown)
    assert normalized(results[2].printed) != normalized(blocks[2].shown)
    assert results[3].error is not None and "ZeroDivisionError" in results[3].error
    assert f'"{page}", line 28' in results[3].error


def test_a_page_names_what_it_needs(tmp_path, monkeypatch):
    page = tmp_path / "ch99_needs.md"
    page.write_text("<!-- requires: FNNET_TEST_PROBE_DIR -->\n```python\nprint(1)\n```\n")
    monkeypatch.delenv("FNNET_TEST_PROBE_DIR", raising=False)
    assert "FNNET_TEST_PROBE_DIR" in missing_requirements(page)
    monkeypatch.setenv("FNNET_TEST_PROBE_DIR", str(tmp_path / "nowhere"))
    assert "not a folder" in missing_requirements(page)
    monkeypatch.setenv("FNNET_TEST_PROBE_DIR", str(tmp_path))
    assert missing_requirements(page) is None


def test_the_notebooks_are_in_sync_with_the_pages():
    pytest.importorskip("jupytext", reason=DOCS_EXTRA)
    problems = _make_notebooks().stale()
    assert not problems, "run: python docs/make_notebooks.py\n" + "\n".join(problems)


def test_a_notebook_has_the_pages_code_cells_and_no_outputs():
    pytest.importorskip("jupytext", reason=DOCS_EXTRA)
    import nbformat

    make = _make_notebooks()
    for page in PAGES:
        nb = nbformat.reads(make.notebook_text(page), as_version=4)
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        assert [c + "\n" for c in code] == [b.code for b in page_blocks(page)], page.name
        assert all(not c.outputs and c.execution_count is None for c in nb.cells if c.cell_type == "code")
        assert make.notebook_text(page) == make.notebook_text(page)


def _execute(nb, cwd, monkeypatch):
    """Run every cell of `nb` in a fresh python3 kernel started in `cwd`, in the pages' environment;
    nbclient raises CellExecutionError at the first cell that raises."""
    nbclient = pytest.importorskip("nbclient", reason=DOCS_EXTRA)
    for name, value in page_env().items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


@pytest.mark.notebooks
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_the_notebook_executes(page, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason=DOCS_EXTRA)
    reason = missing_requirements(page)
    if reason:
        pytest.skip(reason)
    nb = nbformat.read(DOCS / "notebooks" / (page.stem + ".ipynb"), as_version=4)
    nb = _execute(nb, tmp_path, monkeypatch)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    for cell, block in zip(code, page_blocks(page), strict=True):
        if block.shown is not None:
            stdout = [o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout"]
            printed = "".join(stdout)
            assert normalized(printed) == normalized(block.shown), f"{page.name}:{block.line}"


@pytest.mark.notebooks
def test_a_notebook_cell_that_raises_fails(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason=DOCS_EXTRA)
    from nbclient.exceptions import CellExecutionError

    cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("x / 0")]
    nb = nbformat.v4.new_notebook(cells=cells)
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        _execute(nb, tmp_path, monkeypatch)


def test_pages_link_figures_that_exist():
    import re

    for page in PAGES:
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).resolve().is_file(), f"{page.name}: {target}"

