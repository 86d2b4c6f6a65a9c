"""Serves the dashboard's static pages (conveyor.dashboard) under /dashboard.

The pages hold no data and need no credentials: everything they show comes from the API,
called by the browser with the signed-in caller's credential. Answers carry a strict content
security policy (scripts and styles from this origin only, no inline script, no framing).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.dashboard import STATIC

PATH = "/dashboard"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated (ETag): a new release is seen at once
}


class _Secured:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_secured)


def mount_dashboard(app: FastAPI) -> None:
    """/dashboard/ answers index.html; its scripts, styles and the vendored files beside it."""

    async def to_index() -> RedirectResponse:
        return RedirectResponse(PATH + "/", status_code=307)

    app.add_api_route(PATH, to_index, methods=["GET"], include_in_schema=False)
    app.mount(PATH, _Secured(StaticFiles(directory=STATIC, html=True)), name="dashboard")
