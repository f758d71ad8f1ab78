"""`fnnet draw`: a local web page where you draw a digit and see what the network sees (the 28x28
input, the probabilities and, for a convolutional network, the first layer's feature maps).

The model: --params, else the newest run in ./runs/ whose params.npz takes 28x28 images, else the
book's SimpleConvNet (params.pkl in $FNNET_BOOK_WEIGHTS_DIR). The page needs the `draw` extra
(starlette, uvicorn); `fnnet.web` serves it, within the limits --max-pixels, --max-decodes,
--max-connections and --timeout. It listens on this machine only unless --host says otherwise, and
then warns that anyone on the network can reach it.
"""

from __future__ import annotations

import glob
import ipaddress
import math
import os
import socket
import sys

from fnnet.cli.common import add_debug, float_type, int_type, positive_int
from fnnet.cli.predict import _model

EXTRA_HINT = 'fnnet draw needs the draw extra: pip install "fnnet[draw]"'
BOOK_WEIGHTS_ENV = "FNNET_BOOK_WEIGHTS_DIR"
RUNS_DIR = "runs"
LIMITS = ("max_pixels", "max_decodes", "max_connections", "timeout")  # options passed on to fnnet.web.serve


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
    # the defaults are fnnet.web's (not imported here: it needs the draw extra)
    d.add_argument("--max-pixels", type=positive_int, default=None, metavar="N",
                   help="refuse an image whose header declares more pixels, before decoding it (default: "
                   "4,000,000)")
    d.add_argument("--max-decodes", type=positive_int, default=None, metavar="N",
                   help="images prepared at once; the others wait their turn (default: 2)")
    d.add_argument("--max-connections", type=positive_int, default=None, metavar="N",
                   help="open connections; more are refused (default: 64)")
    d.add_argument("--timeout", type=float_type(0, True), default=None, metavar="SECONDS",
                   help="the longest wait for a request's headers, its body, or its turn to be prepared "
                   "(default: 10)")
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


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only: a loopback address, or a name whose addresses all are
    (0.0.0.0 and :: are every address, so not)."""
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        pass
    try:
        found = {info[4][0].split("%")[0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False
    return bool(found) and all(ipaddress.ip_address(a).is_loopback for a in found)


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
    if not is_loopback(args.host):
        print(f"fnnet draw: warning: --host {args.host} is not a loopback address: anyone who can reach this "
              "machine on the network can use the page", file=sys.stderr, flush=True)
    print(f"fnnet draw: open {url_of(args.host, args.port)} (Ctrl-C stops)", flush=True)
    limits = {name: getattr(args, name) for name in LIMITS if getattr(args, name) is not None}
    web.serve(classifier, host=args.host, port=args.port, **limits)
    return 0
