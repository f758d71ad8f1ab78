"""`fnnet draw`: a local web page where you draw a digit and see what the network sees (the 28x28
input, the probabilities and, for a convolutional network, the first layer's feature maps).

The model: --params, else the newest run in ./runs/ whose params.npz takes 28x28 images, else the
book's SimpleConvNet (params.pkl in $FNNET_BOOK_WEIGHTS_DIR). The page needs the `draw` extra
(starlette, uvicorn); `fnnet.web` serves it.
"""

from __future__ import annotations

import glob
import math
import os
import sys

from fnnet.cli.common import add_debug, int_type
from fnnet.cli.predict import _model

EXTRA_HINT = 'fnnet draw needs the draw extra: pip install "fnnet[draw]"'
BOOK_WEIGHTS_ENV = "FNNET_BOOK_WEIGHTS_DIR"
RUNS_DIR = "runs"


class MissingExtra(Exception):
    """starlette or uvicorn is not installed; reported as the one-line install hint."""


def add_parser(sub):
    """Register `draw` on the subparsers `sub`; returns its parser."""
    d = sub.add_parser(
        "draw", help="draw a digit in your browser and see what the network sees",
        description="Serve a page where you draw a digit: the 28x28 image the network receives, the ten "
                    "probabilities and the first convolution layer's feature maps. Needs the draw extra: "
                    'pip install "fnnet[draw]".')
    d.add_argument("--params", default=None, metavar="FILE",
                   help="a run's params.npz or the book's .pkl (default: the newest run in ./runs/ that "
                   f"takes 28x28 images, else the book's params.pkl in ${BOOK_WEIGHTS_ENV})")
    d.add_argument("--model", type=_model, default=None, metavar="NAME|MODULE:ATTR|FILE.py:ATTR",
                   help="the network (default: the run's, or for the book's .pkl the one its arrays fit)")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this "
                   "machine only)")
    d.add_argument("--port", type=int_type(1, 65535), default=8000, help="(default: 8000)")
    add_debug(d)
    return d


def newest_run(folder: str = RUNS_DIR) -> str | None:
    """The params.npz of the newest run in `folder` whose metrics.json records 28x28 (784-value)
    input, or None."""
    from fnnet.inference import read_run_info

    found = []
    for path in glob.glob(os.path.join(glob.escape(folder), "*", "params.npz")):
        run, shape = read_run_info(path, fn="fnnet draw", warn=lambda line: None)
        if shape and math.prod(shape) == 28 * 28 and run.get("model"):
            try:
                found.append((os.path.getmtime(path), path))
            except OSError:
                continue
    return max(found)[1] if found else None


def choose_params(params: str | None, model: str | None) -> tuple[str, str | None, str]:
    """(params path, model, why) for `fnnet draw`: --params, else the newest run, else the book's
    SimpleConvNet; raises ValueError saying what to do when there is none."""
    if params is not None:
        return params, model, "--params"
    run = newest_run()
    if run is not None:
        return run, model, f"the newest run in {RUNS_DIR}/"
    folder = os.environ.get(BOOK_WEIGHTS_ENV)
    if folder and os.path.isfile(os.path.join(folder, "params.pkl")):
        return os.path.join(folder, "params.pkl"), model or "simple_convnet", f"${BOOK_WEIGHTS_ENV}"
    where = f"${BOOK_WEIGHTS_ENV}={folder} has no params.pkl" if folder else f"${BOOK_WEIGHTS_ENV} is not set"
    raise ValueError(f"no model to draw for: no run in ./{RUNS_DIR}/ takes 28x28 images and {where}; "
                     "train one (fnnet train --model simple_convnet), pass --params FILE, or set "
                     f"{BOOK_WEIGHTS_ENV} to the folder with the book's params.pkl")


def _web():
    """fnnet.web, or MissingExtra when starlette or uvicorn is not installed."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MissingExtra(EXTRA_HINT) from None
    from fnnet import web

    return web


def url_of(host: str, port: int) -> str:
    """The page's address: IPv6 hosts in brackets, 0.0.0.0 / :: shown as localhost."""
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


def run(args, parser) -> int:
    """Serve the draw page until Ctrl-C."""
    from fnnet.inference import load_classifier

    try:
        web = _web()
    except MissingExtra as e:
        print(e, file=sys.stderr)
        return 1
    path, model, why = choose_params(args.params, args.model)
    classifier = load_classifier(path, model)
    print(f"fnnet draw: {classifier.name}, from {why}", flush=True)
    print(f"fnnet draw: open {url_of(args.host, args.port)} (Ctrl-C stops)", flush=True)
    web.serve(classifier, host=args.host, port=args.port)
    return 0
