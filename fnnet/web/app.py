"""The draw page's server: `GET /` serves the page, `POST /predict` classifies one image.

`POST /predict` takes the raw bytes of an image (`Content-Type: image/...`, e.g. the canvas's
PNG), prepares it as MNIST was made (`fnnet.datasets.prepare_digit`) and answers
`{"label", "probabilities" (10), "prepared" (28x28), "feature_maps" (FN x OH x OW, or null),
"model"}`. Errors are `{"error": "one line"}`: 400 for a malformed request or an image that is
not a digit, 413 for a body above `max_body_bytes` (refused while it is read, not after).
Preparation runs in worker threads, off the event loop; the classifier is called under a lock,
since it need not be thread-safe.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fnnet.datasets import prepare_digit

__all__ = ["create_app", "serve", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 2_000_000  # a 280x280 canvas PNG is a few kB
STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'", "X-Content-Type-Options": "nosniff"}


class _Refused(Exception):
    """A request answered with `{"error": message}` and `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as its declared or received size exceeds `limit`."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not kind.startswith("image/"):
        raise _Refused(400, f"POST /predict: Content-Type must be an image type like image/png, got {kind!r}")
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise _Refused(400, f"POST /predict: Content-Length must be a number of bytes, got {declared!r}")
    if declared is not None and int(declared) > limit:
        raise _Refused(413, f"POST /predict: the body must be at most {limit} bytes, not {declared}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(413, f"POST /predict: the body must be at most {limit} bytes")
        chunks.append(chunk)
    if size == 0:
        raise _Refused(400, "POST /predict: the body is empty; send the image's bytes")
    return b"".join(chunks)


def _prepare(body: bytes) -> np.ndarray:
    """The posted bytes as a (1, 28, 28) float32 digit; not an image, or no digit in it, is a 400."""
    try:
        return prepare_digit(body)
    except ValueError as e:
        raise _Refused(400, f"POST /predict: {(str(e) or 'not an image').splitlines()[0]}") from None


def _grid(a) -> list:
    """A float array as nested lists of 4-decimal floats (small JSON, plenty for grey images)."""
    return np.round(np.asarray(a, dtype=np.float64), 4).tolist()


def create_app(classifier, *, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The Starlette app for `classifier` (`name`, `probabilities(images)`, `feature_maps(images)`)."""
    lock = threading.Lock()

    def classify(body: bytes) -> dict:
        images = _prepare(body)[None]  # (1, 1, 28, 28)
        with lock:
            p = np.asarray(classifier.probabilities(images), dtype=np.float64)
            maps = classifier.feature_maps(images)
        if p.shape != (1, 10) or not np.isfinite(p).all():
            raise RuntimeError(f"classifier {classifier.name}: probabilities must be finite, shape (1, 10); "
                               f"got shape {p.shape}" + ("" if np.isfinite(p).all() else " with NaN or inf"))
        return {"label": int(p[0].argmax()), "probabilities": p[0].tolist(), "prepared": _grid(images[0, 0]),
                "feature_maps": None if maps is None else _grid(np.asarray(maps)[0]),
                "model": str(classifier.name)}

    async def predict(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, max_body_bytes)
            return JSONResponse(await run_in_threadpool(classify, body))
        except _Refused as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        except ClientDisconnect:
            return JSONResponse({"error": "POST /predict: the client disconnected"}, status_code=400)

    async def page(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        line = (str(exc) or "-").splitlines()[0]
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {line}"}, status_code=500)

    routes = [Route("/", page), Route("/predict", predict, methods=["POST"]),
              Mount("/static", StaticFiles(directory=STATIC), name="static")]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})


def serve(classifier, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the draw page for `classifier` on http://host:port/ until Ctrl-C.

    The socket is bound here, so a port in use is an `OSError` naming it rather than a log line.
    """
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as e:
        reason = os.strerror(e.errno) if isinstance(e.errno, int) and e.errno > 0 else e.strerror or str(e)
        raise OSError(f"fnnet.web.serve: cannot listen on {host}:{port}: {reason}") from e
    with sock:
        server = uvicorn.Server(uvicorn.Config(create_app(classifier), log_level="warning"))
        server.run(sockets=[sock])
