"""The chapter pages run: every ```python block of docs/chapters/chNN_*.md executes, in order, in a
fresh process, and prints the ```text block that follows it (exactly, or within the tolerance the page
states for a trained network's numbers); the notebooks generated from the pages are in sync with them.

Tiers: executing the pages is marker `pages` (`pytest -m pages`); executing the notebooks is marker
`notebooks` (`pytest -m notebooks`, needs the docs extra). A notebook's code cells are the page's python
blocks, so one execution as a notebook checks both: that the notebook runs and that each cell prints
what the page shows. CI therefore runs the chapter pages as notebooks only.
"""

from __future__ import annotations

import importlib.util
import os
import re
import warnings
from datetime import datetime

import pytest
from doc_examples import (
    CHAPTERS,
    DOCS,
    SLOW_BLOCK_S,
    block_failure,
    matches,
    missing_requirements,
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


@pytest.mark.pages
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
        failures.append(block_failure(page, block, result.printed, result.error))
        _warn_if_slow(page, block, result.seconds)
    failures = [f for f in failures if f]
    assert not failures, "\n\n".join(failures)
    assert len(results) == len(blocks)


def _warn_if_slow(page, block, seconds):
    if seconds > SLOW_BLOCK_S:
        warnings.warn(f"{page.name}:{block.line} took {seconds:.1f} s (> {SLOW_BLOCK_S:.0f} s)", stacklevel=2)


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
    failures = [block_failure(page, b, r.printed, r.error) for b, r in zip(blocks, results, strict=False)]
    assert failures[:2] == [None, None]
    assert "ch99_probe.md:21 printed\n42\n\nbut the page shows\n41" in failures[2]
    assert "ZeroDivisionError" in failures[3] and f'"{page}", line 28' in failures[3]


TOLERANCE_PAGE = """A trained network, and what it printed on the machine that wrote the page:

```python
print("train 1.00, test 0.83, gap 0.17")
```

<!-- tolerance: 0.02 trained accuracies differ by processor -->
```text
train 1.00, test 0.84, gap 0.15
```

```python
print("train 1.00, test 0.81, gap 0.19")
```
<!-- tolerance: 0.02 trained accuracies differ by processor -->

```text
train 1.00, test 0.84, gap 0.15
```

```python
print("train 1.00, test 0.84, gap 0.15 (weight decay)")
```

<!-- tolerance: 0.02 trained accuracies differ by processor -->
```text
train 1.00, test 0.84, gap 0.15
```

```python
print("gap 0.16")
```

```text
gap 0.15
```
"""


def test_a_tolerance_lets_numbers_move_that_much_and_no_more(tmp_path):
    page = tmp_path / "ch99_tolerance.md"
    page.write_text(TOLERANCE_PAGE)
    blocks = page_blocks(page)
    assert [b.tolerance for b in blocks] == [0.02, 0.02, 0.02, None]
    results = run_page(page, tmp_path)
    failures = [block_failure(page, b, r.printed, r.error) for b, r in zip(blocks, results, strict=True)]
    assert failures[0] is None                            # 0.01 and 0.02 away: within 0.02
    assert "(numbers within 0.02)" in failures[1]         # test 0.03 and gap 0.04 away: outside
    assert failures[2] is not None                        # numbers equal, text differs: never tolerated
    assert failures[3] is not None                        # no tolerance stated: exact, 0.01 is too far
    assert matches("lr 1e-4: 0.12", "lr 1e-4: 0.13", 0.01)
    for label in ("lr 1e-3: 0.13", "step 21: 0.13", "lr 1e-4: 0.13 0.13"):   # labels and layout are exact
        assert not matches(label, "lr 1e-4: 0.13", 0.5) and not matches("lr 1e-4: 0.13", label, 0.5), label


@pytest.mark.parametrize("comment", ["<!-- tolerance: 0.02 -->", "<!-- tolerance: much trained -->",
                                     "<!-- tolerance: -1 trained -->", "<!-- tolerance: 0 trained -->"])
def test_a_tolerance_must_say_how_much_and_why(tmp_path, comment):
    page = tmp_path / "ch99_bad.md"
    page.write_text(f"```python\nprint(1)\n```\n{comment}\n```text\n1\n```\n")
    with pytest.raises(ValueError, match=r"ch99_bad.md:4: expected one '<!-- tolerance: NUMBER why -->'"):
        page_blocks(page)


def test_a_tolerance_that_applies_to_no_output_is_an_error(tmp_path):
    page = tmp_path / "ch99_stray.md"
    page.write_text("<!-- tolerance: 0.02 trained -->\n```python\nprint(1)\n```\n\n```text\n1\n```\n")
    with pytest.raises(ValueError, match="not between a ```python block and the ```text block"):
        page_blocks(page)
    page.write_text("```python\nprint(1)\n```\n<!-- tolerance: 0.02 a -->\n<!-- tolerance: 0.02 b -->\n"
                    "```text\n1\n```\n")
    with pytest.raises(ValueError, match="ch99_stray.md:5: expected one"):
        page_blocks(page)


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
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", record_timing=True,
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def _seconds(cell) -> float:
    """How long the kernel took to run `cell` (nbclient's timing metadata)."""
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def _notebook_failures(page, notebook, cwd, monkeypatch) -> list[str]:
    """Execute `notebook` and check it against `page` as the pages' test checks a page: its code cells
    are the page's python blocks, every one ran, and each printed what the page shows (exactly or
    within the page's tolerance). Returns what failed."""
    nbformat = pytest.importorskip("nbformat", reason=DOCS_EXTRA)
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(notebook, as_version=4)
    blocks = page_blocks(page)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.source + "\n" for c in code] == [b.code for b in blocks], \
        f"{notebook.name} is not {page.name}: run python docs/make_notebooks.py"
    try:
        _execute(nb, cwd, monkeypatch)
    except CellExecutionError:
        pass  # the cell that raised carries the error output, reported below
    failures = []
    for cell, block in zip(code, blocks, strict=True):
        if not cell.execution_count:
            failures.append(f"{page.name}:{block.line} never ran")
            break
        errors = [o for o in cell.outputs if o.output_type == "error"]
        error = "\n".join(f"{o.ename}: {o.evalue}" for o in errors) or None
        printed = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")
        failures.append(block_failure(page, block, printed, error))
        _warn_if_slow(page, block, _seconds(cell))
    return [f for f in failures if f]


@pytest.mark.notebooks
@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_the_notebook_executes_and_prints_what_the_page_shows(page, tmp_path, monkeypatch):
    reason = missing_requirements(page)
    if reason:
        pytest.skip(reason)
    failures = _notebook_failures(page, DOCS / "notebooks" / (page.stem + ".ipynb"), tmp_path, monkeypatch)
    assert not failures, "\n\n".join(failures)


@pytest.mark.notebooks
def test_a_notebook_cell_that_raises_fails(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason=DOCS_EXTRA)
    from nbclient.exceptions import CellExecutionError

    cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("x / 0")]
    nb = nbformat.v4.new_notebook(cells=cells)
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        _execute(nb, tmp_path, monkeypatch)


@pytest.mark.notebooks
def test_a_notebook_is_held_to_the_pages_outputs_and_tolerances(tmp_path, monkeypatch):
    page = tmp_path / "ch99_tolerance.md"
    page.write_text(TOLERANCE_PAGE + "\n```python\n1 / 0\n```\n\n```python\nprint('never runs')\n```\n")
    notebook = tmp_path / "ch99_tolerance.ipynb"
    notebook.write_text(_make_notebooks().notebook_text(page), encoding="utf-8")
    failures = _notebook_failures(page, notebook, tmp_path, monkeypatch)
    assert [f.split("\n")[0] for f in failures] == [
        "ch99_tolerance.md:13 printed", "ch99_tolerance.md:22 printed", "ch99_tolerance.md:31 printed",
        "ch99_tolerance.md:39 raised:", "ch99_tolerance.md:43 never ran"]
    assert "ZeroDivisionError" in failures[3]


def test_pages_link_figures_that_exist():
    import re

    for page in PAGES:
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).resolve().is_file(), f"{page.name}: {target}"



def test_every_chapter_has_a_figure_and_links_its_notebook():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        images = re.findall(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", text)
        assert images and all((page.parent / i).is_file() for i in images), (page.name, images)
        notebook = f"../notebooks/{page.stem}.ipynb"
        download = f'{{ download="{page.stem}.ipynb" }}'
        assert f"]({notebook})" in text and f"]({notebook}){download}" in text, page.name
        assert (page.parent / notebook).is_file()


def test_a_page_figure_is_small_shown_and_made_by_the_command_under_it():
    figures = sorted((DOCS / "figures").glob("*.png"))
    assert figures
    pages = {page: page.read_text(encoding="utf-8") for page in PAGES}
    for figure in figures:
        assert figure.stat().st_size < 150_000, f"{figure.name}: {figure.stat().st_size} bytes"
        shown = [text for text in pages.values() if f"](../figures/{figure.name})" in text]
        assert len(shown) == 1, f"{figure.name} is shown on {len(shown)} pages"
        after = shown[0].split(f"](../figures/{figure.name})", 1)[1]
        made = re.search(r"made by\s+`python (scripts/\w+\.py) ([^`]*)`", after, flags=re.I)
        assert made and (DOCS.parent / made.group(1)).is_file(), f"{figure.name}: no command under it"
        assert "docs/figures" in made.group(2), (figure.name, made.group(0))
