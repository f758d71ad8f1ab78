"""The documentation site and the README stay true.

- Every fnnet target of the name table (docs/book_names.md) exists: a module, function or
  constant imports, an `fnnet` command parses, a script is in the repository; and the table
  names every class and function the book defines.
- `mkdocs build --strict` builds the site (when the docs extra is installed) with the chapter
  pages, the API reference and the name table, and the configuration fails on a broken link.
- The README is the short front door: at most 120 lines, the two set-up commands that CI runs,
  links that resolve, and the example of the getting-started page, which prints what it shows.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from doc_examples import block_failure, page_blocks, run_page

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
NAMES = DOCS / "book_names.md"
CI = ROOT / ".ci" / "run"

CHAPTERS = ["ch02_perceptron", "ch03_neural_networks", "ch04_learning", "ch05_backpropagation",
            "ch06_training_techniques", "ch07_convolutional_networks", "ch08_deep_learning"]
API_MODULES = ["gates", "functions", "gradient", "layers", "models", "optimizers", "schedules",
               "regularization", "init", "datasets", "training", "gradcheck", "io", "augment", "distributed"]
GUIDES = ["getting_started", "cli", "check_your_layer", "your_own_network", "handwriting", "many_devices",
          "robustness", "records", "book_names"]

# What the book defines, by chapter (its text, chNN/, common/ and dataset/): each must be in the table.
BOOK_NAMES = {
    2: ["AND", "NAND", "OR", "XOR"],
    3: ["step_function", "sigmoid", "relu", "identity_function", "softmax", "init_network", "forward",
        "get_data", "predict", "img_show", "load_mnist", "init_mnist", "download_mnist",
        "_change_one_hot_label"],
    4: ["mean_squared_error", "sum_squared_error", "cross_entropy_error", "numerical_diff", "function_1",
        "tangent_line", "function_2", "numerical_gradient", "_numerical_gradient_no_batch",
        "numerical_gradient_2d", "gradient_descent", "simpleNet", "TwoLayerNet"],
    5: ["MulLayer", "AddLayer", "Relu", "Sigmoid", "Affine", "SoftmaxWithLoss", "sigmoid_grad", "relu_grad",
        "softmax_loss", "TwoLayerNet", "gradient_check"],
    6: ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "weight_init_std", "MultiLayerNet",
        "MultiLayerNetExtend", "BatchNormalization", "Dropout", "weight_decay_lambda", "Trainer",
        "shuffle_dataset", "__train", "smooth_curve", "f", "df"],
    7: ["conv_output_size", "im2col", "col2im", "Convolution", "Pooling", "SimpleConvNet", "save_params",
        "load_params", "filter_show"],
    8: ["DeepConvNet", "augmentation", "LeNet"],
}


# --- the name table ---------------------------------------------------------------------------------

def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row; an escaped pipe (\\|) stays inside its cell."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def name_rows() -> list[tuple[int, list[str]]]:
    """[(chapter, [the book, where, fnnet, what differs])] of the table's body rows."""
    rows, chapter = [], None
    for line in NAMES.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"## Chapter (\d+)", line)
        if heading:
            chapter = int(heading.group(1))
        elif line.startswith("|") and chapter is not None:
            cells = _cells(line)
            if cells[0] == "the book" or set(cells[0]) <= {"-", " "}:
                continue
            rows.append((chapter, cells))
    return rows


def resolve(target: str) -> str | None:
    """None when `target` exists, else why not: a dotted fnnet name, an `fnnet` command, a script."""
    if target.startswith("fnnet."):
        if not re.fullmatch(r"[\w.]+", target):
            return f"{target}: not a dotted name"
        parts = target.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            for i, attr in enumerate(parts[cut:]):
                if not hasattr(obj, attr):
                    return f"{target}: {'.'.join(parts[:cut + i])} has no attribute {attr!r}"
                obj = getattr(obj, attr)
            return None
        return f"{target}: no such module"
    if target.startswith("fnnet "):
        argv = shlex.split(target)[1:]
        if argv[:1] == ["experiment"]:
            from fnnet.experiments import EXPERIMENTS

            return None if argv[1:] and argv[1] in EXPERIMENTS else f"{target}: no such experiment"
        from fnnet.cli import build_parser

        try:
            build_parser().parse_args(argv)
        except SystemExit:
            return f"{target}: the fnnet command does not take these arguments"
        return None
    if target.startswith("scripts/"):
        return None if (ROOT / target).is_file() else f"{target}: no such file"
    return f"{target}: neither an fnnet name, an fnnet command nor a script"


def test_every_fnnet_target_of_the_name_table_exists(capsys):
    rows = name_rows()
    assert len(rows) > 80, f"the name table has only {len(rows)} rows"
    problems = []
    for chapter, cells in rows:
        assert len(cells) == 4, f"chapter {chapter}: a row without 4 cells: {cells}"
        targets = re.findall(r"`([^`]+)`", cells[2])
        if not targets:
            problems.append(f"chapter {chapter}, {cells[0]}: no fnnet target")
        problems += [why for why in map(resolve, targets) if why]
    capsys.readouterr()  # argparse's usage lines for a refused command
    assert not problems, "\n".join(problems)


def test_the_resolver_refuses_what_does_not_exist(capsys):
    assert resolve("fnnet.layers.affine") is None
    assert resolve("fnnet.models.two_layer_net.gradient") is None
    assert resolve("fnnet train --model deep_convnet --optimizer adam --epochs 20") is None
    assert resolve("fnnet experiment optimizer-paths") is None
    assert resolve("scripts/ch08_lenet5.py") is None
    for wrong in ("fnnet.layers.Affin", "fnnet.modelz.two_layer_net", "fnnet.models.two_layer_net.grad",
                  "fnnet train --model no_such_net", "fnnet train --optimizer lbfgs",
                  "fnnet experiment no-such-figure", "scripts/ch99_missing.py", "TwoLayerNet"):
        assert resolve(wrong) is not None, wrong
    capsys.readouterr()


def test_the_name_table_names_everything_the_book_defines():
    rows = name_rows()
    assert sorted({chapter for chapter, _ in rows}) == list(range(2, 9))
    missing = []
    for chapter, names in BOOK_NAMES.items():
        book_cells = " ".join(cells[0] for c, cells in rows if c == chapter)
        missing += [f"chapter {chapter}: {name}" for name in names
                    if not re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", book_cells)]
    assert not missing, "the name table lacks:\n" + "\n".join(missing)


# --- the site ---------------------------------------------------------------------------------------

def _docs_tools_missing() -> str | None:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except ModuleNotFoundError:
            return module
    return None


needs_docs_tools = pytest.mark.skipif(
    _docs_tools_missing() is not None,
    reason=f"mkdocs build needs the docs extra (missing {_docs_tools_missing()}): pip install -e '.[docs]'")


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], cwd=config.parent, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


@needs_docs_tools
def test_the_site_builds_strictly_with_chapters_api_and_name_table(tmp_path):
    site = tmp_path / "site"
    proc = mkdocs_build(ROOT / "mkdocs.yml", site)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-6000:]

    def page(path: str) -> str:
        html = site / path / "index.html"
        assert html.is_file(), f"the site has no {path}/"
        return html.read_text(encoding="utf-8")

    for chapter in CHAPTERS:
        assert "<h1" in page(f"chapters/{chapter}")
    for module in API_MODULES:
        html = page(f"api/{module}")
        assert re.search(rf'id="fnnet\.{module}\.\w', html), f"api/{module}: no documented member"
    layers = page("api/layers")
    for name in ("core.affine", "core.softmax_with_loss", "normalization.batch_norm", "conv.convolution",
                 "compose.serial"):
        assert f'id="fnnet.layers.{name}"' in layers, name
    models = page("api/models")
    for name in ("three_layer_net", "simple_net", "two_layer_net", "multi_layer_net", "simple_convnet",
                 "deep_convnet"):
        assert f'id="fnnet.models.{name}"' in models, name
    names = page("book_names")
    assert names.count("<tr>") > 80 and "fnnet.models.simple_net" in names
    for guide in GUIDES:
        page(guide)
    home = page(".")
    for chapter in CHAPTERS:
        assert f'href="chapters/{chapter}/"' in home, chapter


@needs_docs_tools
def test_the_site_configuration_fails_on_a_broken_link(tmp_path):
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^strict: true$", config, flags=re.M), "mkdocs.yml is not strict"
    block = re.search(r"^validation:\n(?:  .*\n)+", config, flags=re.M).group(0)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n\n[there](there.md) and [here](#nowhere)\n")
    small = tmp_path / "mkdocs.yml"
    small.write_text(f"site_name: probe\nstrict: true\nnav:\n  - index.md\n{block}")
    proc = mkdocs_build(small, tmp_path / "site")
    assert proc.returncode != 0
    assert "there.md" in proc.stderr and "nowhere" in proc.stderr, proc.stderr[-3000:]


# --- the README -------------------------------------------------------------------------------------

def setup_commands() -> list[str]:
    readme = README.read_text(encoding="utf-8")
    section = re.search(r"^## Set up\n(.*?)(?=^## |\Z)", readme, flags=re.M | re.S)
    assert section, "README.md has no '## Set up' section"
    blocks = re.findall(r"^```bash\n(.*?)^```", section.group(1), flags=re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_readme_is_a_short_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 120, f"README.md has {len(lines)} lines"


def test_ci_runs_the_readme_commands_every_tier_then_builds_the_site():
    install, tests = setup_commands()
    ci = [line.strip() for line in CI.read_text(encoding="utf-8").splitlines()]
    assert "pip install" in install and install.endswith("&& fnnet train")
    assert tests.endswith("python -m pytest -n auto")
    assert ci.index(install) < ci.index(tests), "CI must install before it tests"
    docs_extra = [i for i, line in enumerate(ci) if re.fullmatch(r"pip install -e \"?\.\[docs\]\"?", line)]
    build = [i for i, line in enumerate(ci) if line.startswith("mkdocs build --strict")]
    assert docs_extra and build, "CI must install the docs extra and build the site"
    tiers = [(i, shlex.split(line)) for i, line in enumerate(ci) if line.startswith("tier -m ")]
    assert ci.index(install) < docs_extra[0] < ci.index(tests) < min(i for i, _ in tiers) < build[0]
    # Every marker that pyproject registers is run by one of CI's tiers.
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    markers = re.findall(r'^    "(\w+): ', config, flags=re.M)
    run = " ".join(argv[2] for _, argv in tiers)
    assert markers and all(re.search(rf"(?<!not ){m}\b", run) for m in markers), (markers, run)


def test_the_readme_and_the_guides_link_to_what_exists():
    targets = []
    guides = ("index", "getting_started", "cli", "handwriting", "many_devices", "robustness", "records",
              "book_names")
    for page in [README] + [DOCS / f"{name}.md" for name in guides]:
        text = page.read_text(encoding="utf-8")
        links = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
        for link in links + re.findall(r'(?:src|href)="([^"]+)"', text):
            if not re.match(r"[a-z]+://|#", link):
                targets.append((page, link.split("#")[0]))
    missing = [f"{page.name}: {link}" for page, link in targets if not (page.parent / link).exists()]
    assert not missing, "\n".join(missing)
    readme_links = {link for page, link in targets if page == README}
    for name in [f"chapters/{c}" for c in CHAPTERS] + GUIDES + ["api/index"]:
        assert f"docs/{name}.md" in readme_links, f"the README does not link docs/{name}.md"
    for image in sorted((DOCS / "gallery").glob("*.png")):
        assert f"docs/gallery/{image.name}" in readme_links, f"the README's gallery lacks {image.name}"


def test_the_readme_example_is_the_first_example_of_getting_started():
    readme, started = page_blocks(README), page_blocks(DOCS / "getting_started.md")
    assert len(readme) == 1 and readme[0].shown is not None
    assert (readme[0].code, readme[0].shown, readme[0].tolerance) == \
        (started[0].code, started[0].shown, started[0].tolerance)


@pytest.mark.pages
def test_getting_started_prints_what_it_shows(tmp_path):
    page = DOCS / "getting_started.md"
    blocks = page_blocks(page)
    assert len(blocks) >= 4 and all(block.shown is not None for block in blocks)
    results = run_page(page, tmp_path)
    assert len(results) == len(blocks)
    failures = [block_failure(page, b, r.printed, r.error) for b, r in zip(blocks, results, strict=True)]
    assert not any(failures), "\n\n".join(filter(None, failures))
