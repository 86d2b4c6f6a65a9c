"""LeanRoute: an APIRoute whose handler provides conveyor's own dependencies directly.

FastAPI's general request handler (its dependency solver, body and response layers) costs
more per request than the busiest endpoints do themselves: a third of an API process's CPU
while it creates jobs, measured with py-spy. Most endpoints take nothing but the request,
the services, the authenticated caller (a `require(permission)` dependency) and string path
parameters; for those this route runs the very same dependency functions itself, in
declaration order, and sends a returned dict as JSON with the route's status code. Any
endpoint with other parameters (queries, bodies, other dependencies) keeps FastAPI's
handler. Declarations are untouched, so OpenAPI and the route table read them as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from conveyor.api.services import services

# How each parameter of a lean endpoint is provided.
Provide = Callable[[Request], Awaitable[Any] | Any]


class LeanRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        providers = _providers(self.dependant)
        if providers is None:
            return super().get_route_handler()
        endpoint = self.endpoint
        status_code = self.status_code or 200

        async def handler(request: Request) -> Response:
            kwargs = {}
            for name, provide, awaited in providers:
                value = provide(request)
                kwargs[name] = await value if awaited else value
            result = await endpoint(**kwargs)
            return result if isinstance(result, Response) else JSONResponse(result, status_code=status_code)

        return handler


def _providers(dependant: Dependant) -> list[tuple[str, Provide, bool]] | None:
    """How to provide each of the endpoint's parameters, in FastAPI's order; None when one is
    of a kind this route leaves to FastAPI."""
    if (
        dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
    ):
        return None
    providers: list[tuple[str, Provide, bool]] = []
    for sub in dependant.dependencies:  # FastAPI solves these first, in this order
        if sub.call is services:
            providers.append((sub.name, _services, False))  # type: ignore[arg-type]
        elif getattr(sub.call, "permission", None) is not None and _takes_only_the_request(sub):
            providers.append((sub.name, sub.call, True))  # type: ignore[arg-type]
        else:
            return None
    for param in dependant.path_params:
        if param.field_info.annotation is not str or param.field_info.metadata:  # validated: FastAPI's
            return None
        providers.append((param.name, _path_param(param.name), False))
    if dependant.request_param_name:
        providers.append((dependant.request_param_name, _request, False))
    return providers


def _takes_only_the_request(dependant: Dependant) -> bool:
    return not dependant.dependencies and _providers(dependant) == [(dependant.request_param_name, _request, False)]


def _services(request: Request) -> Any:
    return request.app.state.services


def _request(request: Request) -> Request:
    return request


def _path_param(name: str) -> Provide:
    def provide(request: Request) -> Any:
        return request.path_params[name]

    return provide
