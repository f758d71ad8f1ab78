"""The draw-a-digit page: draw on a canvas, see what the network sees and what it predicts.

`create_app(classifier)` is a Starlette app (needs the `draw` extra: starlette, uvicorn) that
serves the page at `/` and classifies a posted image at `POST /predict`; `serve(classifier)`
runs it on uvicorn, its memory bounded by pixels and every wait by a deadline (see
`fnnet.web.app`). The classifier is any object with `name`, `probabilities(images)` and
`feature_maps(images)`, as `fnnet.inference.load_classifier` returns.
"""

from fnnet.web.app import MAX_BODY_BYTES, MAX_CONNECTIONS, MAX_DECODES, MAX_PIXELS, TIMEOUT, create_app, serve

__all__ = ["create_app", "serve", "MAX_BODY_BYTES", "MAX_PIXELS", "MAX_DECODES", "MAX_CONNECTIONS", "TIMEOUT"]
