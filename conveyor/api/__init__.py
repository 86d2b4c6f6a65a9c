"""The HTTP edge: a FastAPI app over the core. See conveyor.api.app.create_app."""

from conveyor.api.app import create_app

__all__ = ["create_app"]
