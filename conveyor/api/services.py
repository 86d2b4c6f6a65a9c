"""What the routes use, built once per app and reached through `request.app.state.services`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from conveyor.api.auth import Authenticator
from conveyor.apikeys import ApiKeys
from conveyor.engine import Engine
from conveyor.insights import Insights
from conveyor.runtime import Conveyor
from conveyor.settings import Settings

if TYPE_CHECKING:
    from conveyor.api.metrics import ApiMetrics


@dataclass
class Services:
    conveyor: Conveyor
    keys: ApiKeys
    auth: Authenticator
    metrics: ApiMetrics
    insights: Insights
    worker_enabled: bool = False
    started_at: float = field(default_factory=time.time)

    @property
    def engine(self) -> Engine:
        return self.conveyor.engine

    @property
    def settings(self) -> Settings:
        return self.conveyor.settings


async def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]
