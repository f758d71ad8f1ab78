"""`fnnet draw`: a local web page where you draw a digit and see what the network sees (the 28x28
input, the probabilities and, for a convolutional network, the first layer's feature maps).

The model: --params, else the newest run in ./runs/ whose params.npz takes 28x28 images, else the
book's SimpleConvNet (params.pkl in $FNNET_BOOK_WEIGHTS_DIR). The default pick never runs code: a
run whose metrics.json names your own network, or is damaged, is passed over with one line. The
page needs the `draw` extra (starlette, uvicorn); `fnnet.web` serves it, within the limits
--max-pixels, --max-decodes, --max-connections and --timeout. It listens on this machine only
unless --host says otherwise, and then warns that anyone on the network can reach it.
"""

from __future__ import annotations

import glob
import ipaddress
import math
import os
import socket
import sys

from fnnet.cli.common import add_debug, add_trust_run, float_type, int_type, positive_int
from fnnet.cli.predict import _model, classifier_for

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
    add_trust_run(d, "the --params run")
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


def _scan_runs(folder: str):
    """([(mtime, params path)] of the runs in `folder` that fnnet rebuilds without running code: their
    metrics.json records 28x28 (784-value) input and a built-in model, [(mtime, params path, why)]
    of those passed over: their metrics.json names code (your own network), a model fnnet does not
    know, or is damaged)."""
    from fnnet.inference import MODELS, read_run_info
    from fnnet.models.user import is_spec

    found, passed_over = [], []
    for path in glob.glob(os.path.join(glob.escape(folder), "*", "params.npz")):
        try:
            mtime = os.path.getmtime(path)
        except OSError:
            continue
        try:
            run, shape = read_run_info(path, fn="fnnet draw")
        except (OSError, ValueError) as e:
            passed_over.append((mtime, path, " ".join(str(e).split()).removeprefix("fnnet draw: ")))
            continue
        model = run.get("model")
        if not (shape and math.prod(shape) == 28 * 28 and model):
            continue
        if model in MODELS:
            found.append((mtime, path))
        elif is_spec(model):
            passed_over.append((mtime, path, f"its metrics.json names the code {model}; fnnet draw --params "
                                f"{path} --trust-run runs it"))
        else:
            passed_over.append((mtime, path, f"fnnet cannot rebuild its model {model!r} by name"))
    return found, passed_over


def newest_run(folder: str = RUNS_DIR) -> str | None:
    """The params.npz of the newest run in `folder` whose metrics.json records 28x28 (784-value)
    input and a built-in model, or None: a run that names code (your own network) or whose
    metrics.json is damaged is never picked."""
    found, _ = _scan_runs(folder)
    return max(found)[1] if found else None


def choose_params(params: str | None, model: str | None, warn=None) -> tuple[str, str | None, str]:
    """(params path, model, why) for `fnnet draw`: --params, else the newest run, else the book's
    SimpleConvNet; raises ValueError saying what to do when there is none. Runs newer than the
    pick that it passes over (see `newest_run`) are named in one line through `warn`."""
    if params is not None:
        return params, model, "--params"
    found, passed_over = _scan_runs(RUNS_DIR)
    newest = max(found) if found else (-math.inf, None)
    newer = sorted((item for item in passed_over if item[0] >= newest[0]), reverse=True)
    if newer and warn is not None:
        shown = "; ".join(f"{path} ({why})" for _, path, why in newer[:3])
        more = f"; and {len(newer) - 3} more" if len(newer) > 3 else ""
        warn(f"fnnet draw: passing over {len(newer)} newer run(s) in {RUNS_DIR}/: {shown}{more}")
    run = newest[1]
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
    if args.trust_run and args.params is None:
        parser.error("argument --trust-run: trusts the run that --params names; the default pick (the newest "
                     "run in ./runs/) never runs code")
    try:
        web = _web()
    except MissingExtra as e:
        print(e, file=sys.stderr)
        return 1
    path, model, why = choose_params(args.params, args.model,
                                     warn=lambda line: print(line, file=sys.stderr, flush=True))
    classifier = classifier_for(path, model, args.trust_run)
    print(f"fnnet draw: {classifier.name}, from {why}", flush=True)
    if not is_loopback(args.host):
        print(f"fnnet draw: warning: --host {args.host} is not a loopback address: anyone who can reach this "
              "machine on the network can use the page", file=sys.stderr, flush=True)
    print(f"fnnet draw: open {url_of(args.host, args.port)} (Ctrl-C stops)", flush=True)
    limits = {name: getattr(args, name) for name in LIMITS if getattr(args, name) is not None}
    web.serve(classifier, host=args.host, port=args.port, **limits)
    return 0
