"""Generate docs/notebooks/chNN_*.ipynb from the chapter pages docs/chapters/chNN_*.md with jupytext.

Each ```python block becomes a code cell; everything else (prose, ```text outputs, shell commands,
figures) becomes markdown, less the site's link attributes (`{ download="..." }`), which Jupyter would
show as text. The notebooks carry no outputs, timestamps or random cell ids, so the same
pages always give the same bytes.

    python docs/make_notebooks.py           # write every notebook
    python docs/make_notebooks.py --check   # exit 1, naming each page whose notebook differs
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
CHAPTERS = DOCS / "chapters"
NOTEBOOKS = DOCS / "notebooks"

ATTRIBUTES = re.compile(r"\{:? *download=\"[^\"]*\" *\}")
METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def pages() -> list[Path]:
    """The chapter pages, in chapter order."""
    return sorted(CHAPTERS.glob("ch[0-9][0-9]_*.md"))


def notebook_path(page: Path) -> Path:
    """docs/notebooks/<page stem>.ipynb."""
    return NOTEBOOKS / (page.stem + ".ipynb")


def notebook_text(page: Path) -> str:
    """The notebook for `page`, as the exact text written to disk."""
    import jupytext
    import nbformat

    nb = jupytext.reads(page.read_text(encoding="utf-8"), fmt="md")
    cells = []
    for cell in nb.cells:
        source = cell.source
        if cell.cell_type == "code" and source.startswith("%%"):
            # jupytext turns ```bash (and other languages) into %%bash cells; a page's commands are
            # shown to be typed in a shell, not run by the notebook.
            magic, _, body = source.partition("\n")
            cell = nbformat.v4.new_markdown_cell(f"```{magic[2:].strip()}\n{body}\n```")
        if cell.cell_type == "markdown" and cells and cells[-1].cell_type == "markdown":
            cells[-1].source += "\n\n" + cell.source
            continue
        cells.append(cell)
    out = nbformat.v4.new_notebook(metadata=METADATA)
    for i, cell in enumerate(cells):
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(cell.source)
        else:
            new = nbformat.v4.new_markdown_cell(ATTRIBUTES.sub("", cell.source))
        new.id = f"{page.stem[:4]}-{i:03d}"
        out.cells.append(new)
    nbformat.validate(out)
    return nbformat.writes(out) + "\n"


def stale() -> list[str]:
    """Pages whose notebook is missing or differs, and notebooks without a page."""
    out = []
    for page in pages():
        path = notebook_path(page)
        if not path.exists():
            out.append(f"{page.relative_to(DOCS.parent)}: {path.relative_to(DOCS.parent)} is missing")
        elif path.read_text(encoding="utf-8") != notebook_text(page):
            out.append(f"{page.relative_to(DOCS.parent)}: {path.relative_to(DOCS.parent)} differs")
    known = {notebook_path(p).name for p in pages()}
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        if path.name not in known:
            out.append(f"{path.relative_to(DOCS.parent)}: no page docs/chapters/{path.stem}.md")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a notebook differs")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for line in problems:
            print(line)
        if problems:
            print("run: python docs/make_notebooks.py", file=sys.stderr)
        return 1 if problems else 0
    NOTEBOOKS.mkdir(exist_ok=True)
    for page in pages():
        path = notebook_path(page)
        text = notebook_text(page)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(DOCS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
