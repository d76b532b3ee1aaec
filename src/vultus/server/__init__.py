"""The HTTP API (FastAPI): ``create_app(settings)`` gives the ASGI app that `vultus serve` runs."""

from .app import DEFAULT_MAX_UPLOAD, create_app

__all__ = ["create_app", "DEFAULT_MAX_UPLOAD"]
