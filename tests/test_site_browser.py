"""The built site in a real browser: every chapter page shows its figures, none of them broken, links
to its notebook, which the site serves, and has no code block that scrolls sideways at 1280 px.

Builds the site with mkdocs (the docs extra) into a temporary folder, serves it on a loopback port
and visits each page in headless Chromium (the system's; playwright from the dev extra). Skips,
saying which is missing, otherwise.
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from test_datasets import serve

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p.stem for p in (ROOT / "docs" / "chapters").glob("ch[0-9][0-9]_*.md"))
CHROMIUM = next((path for path in (shutil.which("chromium"), "/usr/bin/chromium")
                 if path and os.path.isfile(path) and os.access(path, os.X_OK)), None)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.xdist_group("site-browser"),
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (no chromium on PATH, no "
                       "/usr/bin/chromium): apt-get install chromium"),
    pytest.mark.skipif(sync_playwright is None, reason="the playwright package is not importable: "
                       "pip install playwright (the dev extra)"),
]


@pytest.fixture(scope="module")
def site_url(tmp_path_factory):
    """The site, built strictly into a temporary folder and served on a free loopback port."""
    pytest.importorskip("mkdocs", reason="building the site needs the docs extra: pip install -e '.[docs]'")
    site = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    with serve(site) as url:
        yield url


@pytest.fixture(scope="module")
def browser_page():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


IMAGES = """() => [...document.querySelectorAll('.md-content img')].map(i => ({
    src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth}))"""
SCROLLING = """() => [...document.querySelectorAll('.md-content pre > code')]
    .filter(c => c.scrollWidth > c.clientWidth).map(c => c.innerText.split('\\n')[0])"""


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_a_chapter_shows_its_figures_links_its_notebook_and_nothing_scrolls(chapter, site_url,
                                                                             browser_page):
    page = browser_page
    assert page.goto(f"{site_url}chapters/{chapter}/").ok
    page.wait_for_load_state("load")
    images = page.evaluate(IMAGES)
    assert images, f"{chapter}: no figure"
    broken = [i["src"] for i in images if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"{chapter}: broken images {broken}"

    links = page.locator(f'.md-content a[href$="{chapter}.ipynb"]')
    assert links.count() >= 2, f"{chapter}: no notebook and download links"
    assert links.nth(1).get_attribute("download") == f"{chapter}.ipynb"
    url = links.first.evaluate("a => a.href")
    with urllib.request.urlopen(url, timeout=30) as response:
        notebook = json.loads(response.read())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert notebook["nbformat"] == 4 and code, f"{url} is not the page's notebook"

    scrolling = page.evaluate(SCROLLING)
    assert not scrolling, f"{chapter}: code blocks that scroll sideways at 1280 px, starting {scrolling}"
