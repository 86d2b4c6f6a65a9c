"""The web dashboard: static pages (HTML, CSS, JavaScript modules; no build step) that the API
serves under /dashboard. In the browser they call the public REST API with the signed-in
caller's own credential, so every page sees and may do exactly what that caller may over HTTP:
there is no second way in. `STATIC` is the directory the API serves."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"
