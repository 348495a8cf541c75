"""The kiosk: a small web app around one shared `Classifier` (`fmnist-edge serve`).

    POST /predict   an image (multipart field `image`, or the raw bytes) -> label, confidence, top-k, time
    GET  /health    model, precision, device, model versions, package versions, uptime: for a kiosk's watchdog
    GET  /          the touch-screen page (camera + photo drop), plain HTML/CSS/JS served from here

Needs the `[kiosk]` extra (Starlette on uvicorn): pip install "fmnist-edge[kiosk]".
"""

from .app import DEFAULT_MAX_UPLOAD, create_app, serve

__all__ = ["create_app", "serve", "DEFAULT_MAX_UPLOAD"]
