"""Run a Markdown page's examples: each ```python block in turn, in one namespace, next to the
```text block that follows it, the output the page shows.

Chapter pages (docs/chapters/chNN_*.md) follow one rule: a ```python block may be followed, with
only blank lines between, by a ```text block; that block is what the python block prints, and the
test asserts it (exact, after stripping trailing whitespace per line and trailing blank lines). A
python block without a text block just has to run. A page that needs data outside the repository
says so once, anywhere, in an HTML comment: ``<!-- requires: FNNET_DATA_DIR FNNET_BOOK_WEIGHTS_DIR -->``
(each name an environment variable that must point at an existing folder).

A trained network's numbers depend on the order in which the processor sums floats, so a page that
shows them says how far they may move, and why, in an HTML comment between the python block and its
text block: ``<!-- tolerance: 0.02 trained accuracies differ by processor -->``. The text around
the numbers must then still match exactly, as must whole numbers and numbers with an exponent (step
counts, learning rates: labels, not results), and each decimal number may differ from the one shown by
at most 0.02; every other text block is exact. A tolerance anywhere else is an error of the page.

``python tests/doc_examples.py PAGE RESULT.json`` runs one page in this process and writes what
each block printed, how long it took and the traceback of the block that raised, if one did; the
tests start it in a fresh subprocess per page (see ``run_page``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHAPTERS = DOCS / "chapters"
SLOW_BLOCK_S = 30.0

_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_REQUIRES = re.compile(r"<!--\s*requires:\s*(.*?)\s*-->", flags=re.S)
_TOLERANCE = re.compile(r"^\s*<!--\s*tolerance:", flags=re.M)   # at the start of a line: not `quoted`
_TOLERANCE_LINE = re.compile(r"<!--\s*tolerance:\s*(\S+)\s+(\S.*?)\s*-->")
_NUMBER = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def printed_and_shown(page: Path, blocks: int) -> list[tuple[str, str]]:
    """[(what the i-th python block printed, the i-th text block)]; asserts the page has `blocks` of each."""
    text = page.read_text(encoding="utf-8")
    code = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    shown = re.findall(r"```text\n(.*?)```", text, flags=re.S)
    assert len(code) == len(shown) == blocks, f"{page.name}: {len(code)} python and {len(shown)} text blocks"
    namespace: dict = {}
    out = []
    for block, expected in zip(code, shown, strict=True):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(block, str(page), "exec"), namespace)
        out.append((buffer.getvalue(), expected))
    return out


@dataclass(frozen=True)
class Block:
    """One ```python block of a page: its code, the ```text block that follows it (None if none),
    the page line where its code starts (1-based), and how far the numbers it prints may differ
    from the ones shown (None: exact; see the module's docstring)."""

    code: str
    shown: str | None
    line: int
    tolerance: float | None = None


def fenced_blocks(text: str) -> list[tuple[str, str, int, int, int]]:
    """[(language, body, first body line, opening fence line, closing fence line)] of the page's
    fenced blocks (fences at the start of a line), in order; lines are 1-based."""
    lines = text.splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i + 1
        j = start
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        if j == len(lines):
            raise ValueError(f"line {i + 1}: a ``` block that is never closed")
        out.append((m.group(1), "\n".join(lines[start:j]) + "\n", start + 1, i + 1, j + 1))
        i = j + 1
    return out


def _tolerance(page: Path, between: list[str], where: int) -> float | None:
    """The tolerance that the lines between a python block and its text block state (None: none);
    `where` is the page line of the first of them. Anything but blank lines and one well-formed
    tolerance comment is an error (ValueError naming the page and line)."""
    found = None
    for i, line in enumerate(between):
        if not line.strip():
            continue
        m = _TOLERANCE_LINE.fullmatch(line.strip())
        try:
            value = float(m.group(1)) if m else None
        except ValueError:
            value = None
        if value is None or not value > 0 or found is not None:
            raise ValueError(f"{page.name}:{where + i}: expected one '<!-- tolerance: NUMBER why -->' "
                             f"(a positive number and a reason), got {line.strip()!r}")
        found = value
    return found


def page_blocks(page: Path) -> list[Block]:
    """The page's python blocks, each with the text block right after it (only blank lines and at
    most one tolerance comment between)."""
    text = page.read_text(encoding="utf-8")
    lines = text.splitlines()
    fences = fenced_blocks(text)
    blocks, tolerances = [], 0
    for k, (lang, body, first, _open, close) in enumerate(fences):
        if lang != "python":
            continue
        shown = tolerance = None
        if k + 1 < len(fences):
            nlang, nbody, _nfirst, nopen, _nclose = fences[k + 1]
            between = lines[close : nopen - 1]
            if nlang == "text" and all(not s.strip() or _TOLERANCE.search(s) for s in between):
                shown = nbody
                tolerance = _tolerance(page, between, close + 1)
                tolerances += tolerance is not None
        blocks.append(Block(body, shown, first, tolerance))
    if len(_TOLERANCE.findall(text)) != tolerances:
        raise ValueError(f"{page.name}: a tolerance comment that is not between a ```python block and "
                         "the ```text block it prints")
    return blocks


def page_requires(page: Path) -> list[str]:
    """Environment variables the page needs (its ``<!-- requires: ... -->`` comments), in order."""
    names: list[str] = []
    for group in _REQUIRES.findall(page.read_text(encoding="utf-8")):
        names += [n for n in group.split() if n not in names]
    return names


def missing_requirements(page: Path) -> str | None:
    """Why the page cannot run here (a variable unset or not a folder), or None when it can."""
    for name in page_requires(page):
        value = os.environ.get(name)
        if not value:
            return f"{page.name} needs {name} (unset here)"
        if not os.path.isdir(value):
            return f"{page.name} needs {name}, and {value} is not a folder"
    return None


def normalized(output: str) -> str:
    """Trailing whitespace stripped per line, trailing blank lines dropped."""
    return "\n".join(line.rstrip() for line in output.splitlines()).rstrip("\n")


def _close(got: str, want: str, tolerance: float) -> bool:
    """A decimal number (0.84) within `tolerance` of the one shown; any other number (12, 1e-4) equal."""
    if "." not in want or "e" in want.lower():
        return got == want
    # The slack absorbs the binary representation of decimals: 0.16 - 0.15 is 0.010000000000000009.
    return abs(float(got) - float(want)) <= tolerance * (1 + 1e-9)


def matches(printed: str, shown: str, tolerance: float | None = None) -> bool:
    """Whether `printed` is what the page shows: equal once normalized, or, with a tolerance, the
    same text between the numbers and each decimal number within `tolerance` of the one shown."""
    if tolerance is None:
        return normalized(printed) == normalized(shown)
    got, want = _NUMBER.split(normalized(printed)), _NUMBER.split(normalized(shown))
    if len(got) != len(want) or got[0::2] != want[0::2]:
        return False
    return all(_close(a, b, tolerance) for a, b in zip(got[1::2], want[1::2], strict=True))


def block_failure(page: Path, block: Block, printed: str, error: str | None) -> str | None:
    """Why a block's run does not keep the page's promise (it raised, or printed other than its text
    block shows), or None when it does."""
    where = f"{page.name}:{block.line}"
    if error is not None:
        return f"{where} raised:\n{error}"
    if block.shown is not None and not matches(printed, block.shown, block.tolerance):
        within = "" if block.tolerance is None else f" (numbers within {block.tolerance:g})"
        return f"{where} printed\n{printed}\nbut the page shows{within}\n{block.shown}"
    return None


@dataclass(frozen=True)
class BlockResult:
    """What one block printed, its wall time in seconds, and its traceback if it raised."""

    line: int
    printed: str
    seconds: float
    error: str | None


def _run_here(page: Path) -> list[dict]:
    """Run the page's python blocks in order in one namespace; stop after the first that raises."""
    namespace: dict = {"__name__": "__main__"}
    results = []
    for block in page_blocks(page):
        # Pad with blank lines so that tracebacks name the page and the line of the page.
        code = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
        buffer = io.StringIO()
        error = None
        start = time.perf_counter()
        with contextlib.redirect_stdout(buffer):
            try:
                exec(code, namespace)
            except BaseException:  # reported to the test, which fails there
                error = traceback.format_exc()
        results.append({"line": block.line, "printed": buffer.getvalue(),
                        "seconds": time.perf_counter() - start, "error": error})
        if error is not None:
            break
    return results


def page_env() -> dict[str, str]:
    """The environment pages and notebooks run in: no display, the CPU (whose float32 digits the pages
    show), and the repository importable."""
    env = dict(os.environ)
    env["MPLBACKEND"] = "Agg"
    env["JAX_PLATFORMS"] = "cpu"
    root = str(DOCS.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_page(page: Path, cwd: Path, timeout: float = 600.0) -> list[BlockResult]:
    """Run the page in a fresh Python process with working folder `cwd`; one result per block run."""
    out = Path(cwd) / "doc-results.json"
    command = [sys.executable, __file__, str(Path(page).resolve()), str(out)]
    proc = subprocess.run(command, cwd=cwd, env=page_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{page.name}: the runner exited {proc.returncode}\n{proc.stderr[-4000:]}")
    return [BlockResult(**r) for r in json.loads(out.read_text(encoding="utf-8"))]


if __name__ == "__main__":
    _page, _out = Path(sys.argv[1]), Path(sys.argv[2])
    _out.write_text(json.dumps(_run_here(_page)), encoding="utf-8")
