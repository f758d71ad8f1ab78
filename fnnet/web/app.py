"""The draw page's server: `GET /` serves the page, `POST /predict` classifies one image.

`POST /predict` takes the raw bytes of an image (`Content-Type: image/...`, e.g. the canvas's
PNG), prepares it as MNIST was made (`fnnet.datasets.prepare_digit`) and answers
`{"label", "probabilities" (10), "prepared" (28x28), "feature_maps" (FN x OH x OW, or null),
"model"}`. Errors are `{"error": "one line"}`: 400 for a malformed request or an image that is
not a digit (unreadable, truncated, NaN or out-of-range pixels), 413 for a body above
`max_body_bytes` (refused while it is read, not after) or an image whose header declares more
than `max_pixels` pixels (refused before it is decoded), 408 for a body that does not arrive
within `timeout` seconds, 503 when `max_decodes` images are being prepared and none finishes
within `timeout` seconds. So memory is bounded by pixels, not by the bytes sent: at most
`max_decodes` images of at most `max_pixels` are decoded at once. Preparation runs in worker
threads, off the event loop; the classifier is called under a lock, since it need not be
thread-safe.

`serve` adds what the app cannot do: a deadline for each request's headers (a connection that
sends half a header, or does not read its answer, is closed after `timeout` seconds), at most
`max_connections` open connections, at most `MAX_HEADER_BYTES` of headers still incomplete, and
logs of one line per kind of error per `LOG_INTERVAL` seconds however many clients misbehave.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
import threading
import time
from pathlib import Path

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fnnet.datasets import prepare_digit
from fnnet.datasets.digit_image import image_size
from fnnet.io import TooLargeError

__all__ = ["create_app", "serve", "MAX_BODY_BYTES", "MAX_PIXELS", "MAX_DECODES", "MAX_CONNECTIONS", "TIMEOUT"]

MAX_BODY_BYTES = 2_000_000  # a 280x280 canvas PNG is a few kB
MAX_PIXELS = 4_000_000  # decoded pixels per image: a 280x280 canvas is 78,400; a 2000x2000 photo fits
MAX_DECODES = 2  # images decoded at once; a 4-megapixel RGBA image takes about 150 MB while it is prepared
MAX_CONNECTIONS = 64  # open connections; more are closed at once, so they cannot use up file descriptors
TIMEOUT = 10.0  # seconds for a request's headers, its body, and its turn to be decoded
MAX_HEADER_BYTES = 16_384  # request line and headers buffered while incomplete (uvicorn's h11 limit)
LOG_INTERVAL = 60.0  # seconds: each kind of log record is printed at most once per interval
STATIC = Path(__file__).parent / "static"
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'", "X-Content-Type-Options": "nosniff"}


class _Refused(Exception):
    """A request answered with `{"error": message}` and `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused (413) as soon as its declared or received size exceeds `limit`,
    and (408) when it has not all arrived within `timeout` seconds."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not kind.startswith("image/"):
        raise _Refused(400, f"POST /predict: Content-Type must be an image type like image/png, got {kind!r}")
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise _Refused(400, f"POST /predict: Content-Length must be a number of bytes, got {declared!r}")
    if declared is not None and int(declared) > limit:
        raise _Refused(413, f"POST /predict: the body must be at most {limit} bytes, not {declared}")
    chunks, size = [], 0
    with anyio.move_on_after(timeout) as deadline:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _Refused(413, f"POST /predict: the body must be at most {limit} bytes")
            chunks.append(chunk)
    if deadline.cancelled_caught:
        raise _Refused(408, f"POST /predict: the body did not arrive within {timeout:g} s ({size} bytes did)")
    if size == 0:
        raise _Refused(400, "POST /predict: the body is empty; send the image's bytes")
    return b"".join(chunks)


def _line(e: Exception) -> str:
    return f"POST /predict: {(str(e) or 'not an image').splitlines()[0]}"


def _check_size(body: bytes, max_pixels: int) -> None:
    """Refuse (413) an image whose header declares more than `max_pixels` pixels, before it waits
    for a turn to be decoded; what is no image is left to `_prepare`."""
    try:
        image_size(body, max_pixels=max_pixels)
    except TooLargeError as e:
        raise _Refused(413, _line(e)) from None
    except ValueError:
        pass


def _prepare(body: bytes, max_pixels: int) -> np.ndarray:
    """The posted bytes as a (1, 28, 28) float32 digit; not an image, or no digit in it, is a 400."""
    try:
        return prepare_digit(body, max_pixels=max_pixels)
    except TooLargeError as e:
        raise _Refused(413, _line(e)) from None
    except ValueError as e:
        raise _Refused(400, _line(e)) from None


def _grid(a) -> list:
    """A float array as nested lists of 4-decimal floats (small JSON, plenty for grey images)."""
    return np.round(np.asarray(a, dtype=np.float64), 4).tolist()


def create_app(classifier, *, max_body_bytes: int = MAX_BODY_BYTES, max_pixels: int = MAX_PIXELS,
               max_decodes: int = MAX_DECODES, timeout: float = TIMEOUT) -> Starlette:
    """The Starlette app for `classifier` (`name`, `probabilities(images)`, `feature_maps(images)`),
    with the limits of the module docstring."""
    for name, value, kind in (("max_body_bytes", max_body_bytes, int), ("max_pixels", max_pixels, int),
                              ("max_decodes", max_decodes, int), ("timeout", timeout, (int, float))):
        if isinstance(value, bool) or not isinstance(value, kind) or not (0 < value < math.inf):
            raise ValueError(f"fnnet.web.create_app: {name} must be a positive "
                             f"{'integer' if kind is int else 'number of seconds'}, got {value!r}")
    lock = threading.Lock()
    decodes = anyio.Semaphore(max_decodes)

    def classify(body: bytes) -> dict:
        images = _prepare(body, max_pixels)[None]  # (1, 1, 28, 28)
        with lock:
            p = np.asarray(classifier.probabilities(images), dtype=np.float64)
            maps = classifier.feature_maps(images)
        if p.shape != (1, 10) or not np.isfinite(p).all():
            raise RuntimeError(f"classifier {classifier.name}: probabilities must be finite, shape (1, 10); "
                               f"got shape {p.shape}" + ("" if np.isfinite(p).all() else " with NaN or inf"))
        return {"label": int(p[0].argmax()), "probabilities": p[0].tolist(), "prepared": _grid(images[0, 0]),
                "feature_maps": None if maps is None else _grid(np.asarray(maps)[0]),
                "model": str(classifier.name)}

    async def decode(body: bytes) -> dict:
        """`classify(body)` once one of the `max_decodes` turns is free, within `timeout` seconds."""
        acquired = False
        with anyio.move_on_after(timeout):
            await decodes.acquire()
            acquired = True
        if not acquired:
            raise _Refused(503, f"POST /predict: the server is busy: {max_decodes} images are being prepared "
                           f"and none finished within {timeout:g} s; try again")
        try:
            return await run_in_threadpool(classify, body)
        finally:
            decodes.release()

    async def predict(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, max_body_bytes, timeout)
            await run_in_threadpool(_check_size, body, max_pixels)
            return JSONResponse(await decode(body))
        except _Refused as e:  # the body may be unread: the connection is closed, not reused
            return JSONResponse({"error": str(e)}, status_code=e.status, headers={"Connection": "close"})
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


def _one_line_per_kind(interval: float = LOG_INTERVAL):
    """A logging filter: the first record of each kind (logger, message template, exception type)
    in each `interval` seconds, as one line (the exception's type and message, not its traceback,
    and how many like it were held back); the others are dropped. A flood of bad clients then
    costs a few lines, not millions."""
    last, held, lock = {}, {}, threading.Lock()

    def keep(record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        key = (record.name, str(record.msg), type(exc))
        now = time.monotonic()
        with lock:
            if now - last.get(key, -math.inf) < interval:
                held[key] = held.get(key, 0) + 1
                return False
            last[key], skipped = now, held.pop(key, 0)
        text = " ".join(record.getMessage().split())
        if exc is not None:
            text += f": {type(exc).__name__}: {' '.join(str(exc).split())}"
        if skipped:
            text += f" ({skipped} more like it held back)"
        record.msg, record.args = text, None
        record.exc_info = record.exc_text = record.stack_info = None
        return True

    return keep


_LOG_FILTER = _one_line_per_kind()
_LOGGERS = ("uvicorn", "uvicorn.error", "asyncio")


class _StderrHandler(logging.StreamHandler):
    """Writes each record to sys.stderr as it is when the record comes. uvicorn's own logging
    configuration binds its handlers to the sys.stderr of the moment it starts, which outlives a
    replaced stream (a test's captured output, closed once the test ends)."""

    stream = property(lambda self: sys.stderr, lambda self, value: None)


def _log_to_stderr() -> None:
    """One `_StderrHandler` ('LEVEL: message') on the server's loggers, which stop there."""
    for name in ("uvicorn", "asyncio"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
            handler = _StderrHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
            logger.addHandler(handler)
        logger.propagate = False


def _protocol(max_connections: int, timeout: float):
    """uvicorn's h11 protocol with a connection cap and a deadline for each request's headers.

    A connection waits for request headers from when it opens and after each answer; when they
    have not arrived within `timeout` seconds it is closed (aborted if its answer is still unread),
    so half-sent headers and unread answers cannot hold connections. Connections beyond
    `max_connections` are answered 503 and closed as they open."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    error = b'{"error": "the server has %d connections open, the most allowed; try again"}' % max_connections
    busy = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(error), error))

    class Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            self.headers_deadline = self.waiting_since = None
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                self.logger.warning("fnnet.web: %d connections open, the most allowed; closing new ones",
                                    max_connections)
                transport.write(busy)
                transport.close()
                return
            self._await_headers()

        def _await_headers(self) -> None:
            self._cancel_deadline()
            self.waiting_since = self.cycle
            self.headers_deadline = self.loop.call_later(timeout, self._headers_late)

        def _cancel_deadline(self) -> None:
            if self.headers_deadline is not None:
                self.headers_deadline.cancel()
                self.headers_deadline = None

        def _headers_late(self) -> None:
            self.headers_deadline = None
            if self.cycle is self.waiting_since:
                self.logger.warning("fnnet.web: closed a connection that sent no complete request headers "
                                    "within %g s", timeout)
                if self.transport.get_write_buffer_size():
                    self.transport.abort()
                else:
                    self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not self.waiting_since:  # a request's headers are complete
                self._cancel_deadline()

        def on_response_complete(self) -> None:
            self._await_headers()
            super().on_response_complete()
            if self.cycle is not self.waiting_since:  # a pipelined request was already waiting
                self._cancel_deadline()

        def connection_lost(self, exc) -> None:
            self._cancel_deadline()
            super().connection_lost(exc)

    return Protocol


def serve(classifier, *, host: str = "127.0.0.1", port: int = 8000, max_body_bytes: int = MAX_BODY_BYTES,
          max_pixels: int = MAX_PIXELS, max_decodes: int = MAX_DECODES,
          max_connections: int = MAX_CONNECTIONS, timeout: float = TIMEOUT) -> None:
    """Serve the draw page for `classifier` on http://host:port/ until Ctrl-C, with the limits of
    the module docstring.

    The socket is bound here, so a port in use is an `OSError` naming it rather than a log line.
    """
    import uvicorn

    app = create_app(classifier, max_body_bytes=max_body_bytes, max_pixels=max_pixels,
                     max_decodes=max_decodes, timeout=timeout)
    if not (isinstance(max_connections, int) and max_connections > 0):
        raise ValueError(f"fnnet.web.serve: max_connections must be a positive integer, "
                         f"got {max_connections!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as e:
        reason = os.strerror(e.errno) if isinstance(e.errno, int) and e.errno > 0 else e.strerror or str(e)
        raise OSError(f"fnnet.web.serve: cannot listen on {host}:{port}: {reason}") from e
    with sock:
        config = uvicorn.Config(app, log_level="warning", log_config=None,
                                http=_protocol(max_connections, timeout), timeout_keep_alive=min(5, timeout),
                                h11_max_incomplete_event_size=MAX_HEADER_BYTES)
        _log_to_stderr()
        for name in _LOGGERS:
            logging.getLogger(name).addFilter(_LOG_FILTER)
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
