"""Run a Markdown page's examples: each ```python block in turn, in one namespace, next to the
```text block that follows it, the output the page shows."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def printed_and_shown(page: Path, blocks: int) -> list[tuple[str, str]]:
    """[(what the i-th python block printed, the i-th text block)]; asserts the page has `blocks` of each."""
    text = page.read_text()
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
