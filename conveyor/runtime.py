"""Conveyor: the composition root. Settings in; store, engine and workers out."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from conveyor.analytics import Analytics
from conveyor.backup import Backups
from conveyor.builtin import jobtypes as builtin_jobtypes
from conveyor.crypto import Keyring
from conveyor.engine import Engine
from conveyor.engine.alerts import AlertRules, Alerts
from conveyor.engine.audit import Audit
from conveyor.engine.batches import Batches
from conveyor.engine.notifications import Notifications
from conveyor.engine.packstate import PackState
from conveyor.engine.results import ResultCache
from conveyor.engine.retention import Pruner, Retention, RetentionPolicy
from conveyor.engine.schedules import Schedules
from conveyor.engine.webhooks import Deliverer, Dispatcher, Webhooks, delivery_jobtypes
from conveyor.interactions import Interactions
from conveyor.jobtypes import Registry
from conveyor.scheduler import Chore, Scheduler
from conveyor.settings import Settings, ignored_seed_variables
from conveyor.signatures import CriticalOperations, Signatures
from conveyor.store import SqlStore, open_store
from conveyor.users import Users
from conveyor.webhooks import AllowList
from conveyor.worker import Worker

PACKS_GROUP = "conveyor.packs"
log = logging.getLogger("conveyor")


@functools.cache
def installed_packs() -> dict[str, str]:
    """Installed job-type packs: entry-point name -> `module:attribute` (group conveyor.packs)."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=PACKS_GROUP)}


def load_packs(names: Iterable[str] | None) -> list[Registry]:
    """The Registries of the packs named (None: every installed pack). Importing a pack is
    cheap: its job types import their heavy libraries when they run."""
    installed = installed_packs()
    if names is None:
        names = sorted(installed)
    registries = []
    for name in names:
        if name not in installed:
            known = ", ".join(sorted(installed)) or "none installed"
            raise ValueError(f"unknown job-type pack {name!r} (installed: {known})")
        registries.append(load_registry(installed[name]))
    return registries


def load_registry(path: str) -> Registry:
    """`package.module:attribute` naming a Registry."""
    module_name, _, attribute = path.partition(":")
    if not attribute:
        raise ValueError(f"job types {path!r}: expected module:attribute")
    registry = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(registry, Registry):
        raise TypeError(f"{path} is not a conveyor Registry")
    return registry


def retention_of(settings: Settings) -> Retention:
    """The retention settings as the Pruner takes them (0 hours: kept for good)."""
    default = RetentionPolicy.of_hours(
        {
            "completed_hours": settings.retention_completed_hours,
            "failed_hours": settings.retention_failed_hours,
            "cancelled_hours": settings.retention_cancelled_hours,
            "timeout_hours": settings.retention_timeout_hours,
        }
    )
    queues = {q: RetentionPolicy.of_hours(ttls, default) for q, ttls in settings.retention_queues.items()}
    logs = timedelta(days=settings.retention_logs_days) if settings.retention_logs_days else None
    counters = timedelta(days=settings.retention_counters_days) if settings.retention_counters_days else None
    return Retention(default, queues, logs, counters)


def alert_rules_of(settings: Settings) -> AlertRules:
    return AlertRules(
        error_threshold=settings.alert_error_threshold,
        latency_threshold_ms=settings.alert_latency_threshold_ms,
        window=timedelta(seconds=settings.alert_window_seconds),
        min_samples=settings.alert_min_samples,
    )


class Conveyor:
    """A store, an engine over it, and the job types this process knows.

    Example::

        async with Conveyor.from_settings(registries=[my_jobs]) as app:
            job = await app.engine.enqueue("reports.export", {"month": "2026-10"})
            await app.worker().run()
    """

    def __init__(self, settings: Settings, store: SqlStore, engine: Engine) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.schedules = Schedules(
            engine,
            grace=timedelta(seconds=settings.scheduler_grace_seconds),
            run_all_cap=settings.scheduler_run_all_cap,
        )
        self.batches = Batches(engine, max_size=settings.batch_max_size)
        self.cache = ResultCache(engine, ttl=timedelta(seconds=settings.cache_ttl))
        self.users = Users.from_settings(store, engine.audit, settings)
        self.signatures = Signatures(
            self.users,
            CriticalOperations.parse(settings.critical_operations),
            frozenset(m.strip() for m in settings.signature_meanings.split(",") if m.strip()),
        )
        engine.signatures = self.signatures
        self.webhooks = Webhooks(
            engine,
            allow=AllowList.parse(settings.webhook_allow_list),
            keyring=engine.sealing.keyring,
            queue=settings.webhook_queue,
        )
        engine.services["webhooks"] = Deliverer(self.webhooks, timeout=settings.webhook_timeout_seconds)
        self.dispatcher = Dispatcher(self.webhooks)
        self.backups = Backups(
            settings.database_url,
            keyring=engine.sealing.keyring,
            root=settings.backup_root_path,
            audit_key=settings.audit_key,
            pg_bin=settings.backup_pg_bin,
            audit=engine.audit,
        )
        engine.services["backup"] = self.backups
        # What packs keep between jobs (ctx.state), the messages they leave for people, and
        # the schedules they keep (a reminder's firings).
        self.state = PackState(store, engine.sealing.keyring)
        self.notifications = Notifications(engine)
        engine.services.update(state=self.state, notifications=self.notifications, schedules=self.schedules)
        self.pruner = Pruner(engine, retention_of(settings), data_dir=Path(settings.data_dir))
        # Job types that keep files for as long as their job is kept read how long that is.
        engine.services["retention"] = self.pruner.retention
        self.alerts = Alerts(store, alert_rules_of(settings))
        # Read-only core data offered to job types (the medication pack's interaction_check
        # and analytics_roll_up) through the same store, so that packs never open one.
        self.interactions = Interactions(store, engine.audit)
        engine.services["interactions"] = self.interactions
        engine.services["analytics"] = Analytics(store)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, registries: Iterable[Registry] = ()) -> Conveyor:
        settings = settings or Settings()
        registry = Registry()
        registry.include(builtin_jobtypes)
        registry.include(
            delivery_jobtypes(
                max_attempts=settings.webhook_max_attempts,
                retry_base=timedelta(seconds=settings.webhook_retry_base_seconds),
                timeout=timedelta(seconds=settings.webhook_timeout_seconds * 3),
                queue=settings.webhook_queue,
            )
        )
        packs = load_packs(settings.pack_names)
        for extra in [*packs, *registries, *(load_registry(p) for p in settings.jobtype_paths)]:
            registry.include(extra)
        store = open_store(
            settings.database_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            pool_size=settings.pool_size,
            pool_timeout=settings.pool_timeout_seconds,
        )
        engine = Engine(
            store,
            registry,
            default_timeout=settings.default_timeout,
            max_timeout=settings.max_timeout,
            audit=Audit(store, key=settings.audit_key, checkpoint_every=settings.audit_checkpoint_every),
            keyring=Keyring.from_settings(settings.encryption_keys, settings.encryption_key_id),
            read_window=timedelta(seconds=settings.audit_read_window_seconds),
        )
        return cls(settings, store, engine)

    @property
    def audit(self) -> Audit:
        return self.engine.audit

    async def start(self) -> None:
        ignored = ignored_seed_variables()
        if ignored:
            log.warning(
                "%s set but ignored: conveyor needs neither Redis nor Celery (jobs, results and the cache "
                "live in its database)",
                ", ".join(ignored),
            )
        # Notifications are listened for by what needs them (a worker, a wait), when it starts.
        if self.settings.auto_migrate:
            await self.store.migrate()
        await self.store.connect()  # the first enqueue then waits for no handshake

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> Conveyor:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def worker(self, **overrides: Any) -> Worker:
        s = self.settings
        options: dict[str, Any] = {
            "queues": s.queue_list,
            "concurrency": s.concurrency,
            "lease": timedelta(seconds=s.lease_seconds),
            "cancel_grace": timedelta(seconds=s.cancel_grace_seconds),
            "shutdown_grace": timedelta(seconds=s.shutdown_grace_seconds),
            "max_log_entries": s.max_log_entries,
            "max_item_errors": s.max_item_errors,
            "process_pool_size": s.process_pool_size,
            "scheduler": self.scheduler() if s.scheduler_enabled else None,
            "data_dir": Path(s.data_dir),
            "data_roots": s.data_root_paths,
        }
        options.update(overrides)
        return Worker(self.engine, **options)

    def scheduler(self, **overrides: Any) -> Scheduler:
        """The scheduler a worker (or an API-only process) runs beside its maintenance."""
        s = self.settings
        options: dict[str, Any] = {
            "interval": timedelta(seconds=s.scheduler_interval_seconds),
            "lease": timedelta(seconds=s.scheduler_lease_seconds),
            "chores": [
                Chore("webhook dispatch", 0, self.dispatcher.run_once),
                Chore("alerts", s.alert_interval_seconds, self.alerts.run_once),
                Chore("retention", s.retention_interval_seconds, self.pruner.run_once),
            ],
        }
        options.update(overrides)
        return Scheduler(self.schedules, **options)
