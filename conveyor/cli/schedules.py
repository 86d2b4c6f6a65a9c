"""`conveyor schedules …` over HTTP; the older database-direct `conveyor schedule …` (hidden
from --help, kept for existing scripts)."""

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli import local
from conveyor.cli.exits import Exit, stop
from conveyor.cli.local import DatabaseOpt
from conveyor.cli.output import JsonOpt, group, plain_table, print_json, print_table, when
from conveyor.cli.remote import call
from conveyor.cli.signing import MeaningOpt, SignAsOpt, signed_call

if TYPE_CHECKING:
    from conveyor.client import Schedule as ClientSchedule
    from conveyor.engine.schedules import Schedules
    from conveyor.store.schedules import Schedule

schedules_app = group("Cron and interval schedules on the server.")
schedule_app = group("Cron and interval schedules, straight in the database (older form of `schedules`).")

ScheduleId = Annotated[str, typer.Argument(help="the schedule's id (conveyor schedules list)")]
DataOpt = Annotated[str, typer.Option(help="the job's input as JSON, or @file")]
CronOpt = Annotated[str | None, typer.Option(help="cron expression, e.g. '0 2 * * *' (or --every)")]
EveryOpt = Annotated[float | None, typer.Option(help="a tick every this many seconds (or --cron)")]
TimezoneOpt = Annotated[str, typer.Option(help="IANA time zone the cron expression is read in")]
PriorityOpt = Annotated[str | None, typer.Option(help="critical, high, medium, low, or 1-10")]
MissedOpt = Annotated[str, typer.Option(help="missed ticks: skip, run_once or run_all")]
PausedOpt = Annotated[bool, typer.Option("--paused", help="create it paused")]


def register(app: typer.Typer) -> None:
    app.add_typer(schedules_app, name="schedules")
    app.add_typer(schedule_app, name="schedule", hidden=True)


# --- over HTTP -----------------------------------------------------------------------------------------


def _timing(s: "ClientSchedule") -> str:
    return f"{s.cron} {s.timezone}" if s.cron else f"every {s.interval_seconds:g}s"


@schedules_app.command("list")
def schedules_list(
    limit: Annotated[int, typer.Option(help="a page of this many")] = 100,
    page: Annotated[int, typer.Option(help="which page")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Every schedule the caller may see, with its next fire time."""
    found = call(lambda c: c.schedules.list(page=page, page_size=limit))
    if as_json:
        print_json(found.items)
        return
    header = ("ID", "NAME", "JOB TYPE", "WHEN", "MISSED", "STATE", "NEXT RUN", "LAST RUN")
    rows = [
        (s.id, s.name, s.job_type, _timing(s), s.missed_policy or "-", "enabled" if s.enabled else "[yellow]paused[/]",
         when(s.next_run_at), when(s.last_run_at))
        for s in found.items
    ]  # fmt: skip
    print_table(header, rows)


@schedules_app.command("show")
def schedules_show(schedule_id: ScheduleId, as_json: JsonOpt = False) -> None:
    """One schedule."""
    found = call(lambda c: c.schedules.get(schedule_id))
    if as_json:
        print_json(found)
    else:
        _print_schedule(found)


def _print_schedule(s: "ClientSchedule") -> None:
    typer.echo(
        f"{s.id}  {s.name}: {s.job_type} {_timing(s)}, {'enabled' if s.enabled else 'paused'},"
        f" next {when(s.next_run_at)}, data {json.dumps(s.data)}"
    )


@schedules_app.command("add")
def schedules_add(
    job_type: Annotated[str, typer.Argument(metavar="TYPE", help="the job type each tick submits")],
    cron: CronOpt = None,
    every: EveryOpt = None,
    timezone: TimezoneOpt = "UTC",
    name: Annotated[str | None, typer.Option(help="what it is for (default: the job type)")] = None,
    data: DataOpt = "{}",
    priority: PriorityOpt = None,
    queue: Annotated[str | None, typer.Option()] = None,
    missed: MissedOpt = "skip",
    paused: PausedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a schedule (--cron or --every)."""
    payload = local.parse_json(data)
    made = call(
        lambda c: c.schedules.create(
            name or job_type, job_type, payload, cron=cron, interval=every, timezone=timezone,
            priority=local.priority(priority), queue=queue, enabled=not paused, missed_policy=missed,
        )
    )  # fmt: skip
    if as_json:
        print_json(made)
    else:
        _print_schedule(made)


@schedules_app.command("update")
def schedules_update(
    schedule_id: ScheduleId,
    cron: Annotated[str | None, typer.Option(help="a new cron expression (an interval schedule becomes cron)")] = None,
    every: Annotated[
        float | None, typer.Option(help="a tick every this many seconds (a cron one becomes interval)")
    ] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone the cron expression is read in")] = None,
    name: Annotated[str | None, typer.Option(help="a new name")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="the job type each tick submits")] = None,
    data: Annotated[str | None, typer.Option(help="the job's input as JSON, or @file (replaces it)")] = None,
    priority: PriorityOpt = None,
    queue: Annotated[str | None, typer.Option()] = None,
    missed: Annotated[str | None, typer.Option(help="missed ticks: skip, run_once or run_all")] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable", help="resume or pause it")] = None,
    sign_as: SignAsOpt = None,
    meaning: MeaningOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the settings given (a new timing starts from now). A change may need an
    e-signature (--sign-as, --meaning) where the server makes schedule.change critical."""
    given: dict[str, Any] = {
        "cron": cron, "interval_seconds": every, "timezone": timezone, "name": name, "job_type": job_type,
        "priority": local.priority(priority), "queue": queue, "missed_policy": missed, "enabled": enabled,
    }  # fmt: skip
    changes = {k: v for k, v in given.items() if v is not None}
    if data is not None:
        changes["data"] = local.parse_json(data)
    if not changes:
        stop(Exit.USAGE, "nothing to change: give --cron, --every, --timezone, --data, --priority… (see --help)")
    found = signed_call(
        lambda c, signature: c.schedules.update(schedule_id, signature=signature, **changes), sign_as, meaning
    )
    print_json(found) if as_json else _print_schedule(found)


@schedules_app.command("pause")
def schedules_pause(
    schedule_id: ScheduleId, sign_as: SignAsOpt = None, meaning: MeaningOpt = None, as_json: JsonOpt = False
) -> None:
    """No ticks until resumed (may need an e-signature: --sign-as, --meaning)."""
    found = signed_call(lambda c, signature: c.schedules.pause(schedule_id, signature=signature), sign_as, meaning)
    print_json(found) if as_json else _print_schedule(found)


@schedules_app.command("run")
def schedules_run(schedule_id: ScheduleId, as_json: JsonOpt = False) -> None:
    """One job of the schedule now, paused or not; its ticks stay as they were."""
    job = call(lambda c: c.schedules.run(schedule_id))
    if as_json:
        print_json(job)
    else:
        typer.echo(f"enqueued {job.id} ({job.type}, {job.status}) from schedule {schedule_id}")


@schedules_app.command("resume")
def schedules_resume(
    schedule_id: ScheduleId, sign_as: SignAsOpt = None, meaning: MeaningOpt = None, as_json: JsonOpt = False
) -> None:
    """Ticks again, from the first one after now (may need an e-signature: --sign-as, --meaning)."""
    found = signed_call(lambda c, signature: c.schedules.resume(schedule_id, signature=signature), sign_as, meaning)
    print_json(found) if as_json else _print_schedule(found)


@schedules_app.command("delete")
def schedules_delete(
    schedule_id: ScheduleId, sign_as: SignAsOpt = None, meaning: MeaningOpt = None, as_json: JsonOpt = False
) -> None:
    """Delete a schedule (the jobs it made stay; may need an e-signature: --sign-as, --meaning)."""
    found = signed_call(lambda c, signature: c.schedules.delete(schedule_id, signature=signature), sign_as, meaning)
    print_json(found) if as_json else typer.echo(f"deleted schedule {found.id} ({found.name})")


# --- straight in the database ------------------------------------------------------------------------------


def _schedules(database_url: str | None, act: Callable[["Schedules"], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with local.conveyor(database_url) as conveyor:
            return await act(conveyor.schedules)

    return local.run(run())


def _schedule_json(s: "Schedule") -> str:
    from conveyor.engine.schedules import describe

    return json.dumps(local.jsonable(describe(s)), indent=2)


def _when(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return "-"
    from zoneinfo import ZoneInfo

    shown = f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    if timezone != "UTC":
        shown += f" ({moment.astimezone(ZoneInfo(timezone)):%H:%M %Z})"
    return shown


@schedule_app.command("list")
def schedule_list(database_url: DatabaseOpt = None) -> None:
    """Every schedule, with its next fire time."""
    found, _total = _schedules(database_url, lambda schedules: schedules.list(limit=10_000))
    header = ("ID", "NAME", "JOB TYPE", "WHEN", "MISSED", "STATE", "NEXT RUN", "LAST RUN")
    rows = [
        (
            s.id,
            s.name,
            s.kind,
            f"{s.timing.cron} {s.timing.timezone}" if s.timing.cron else f"every {s.timing.interval_seconds:g}s",
            s.missed_policy.value,
            "enabled" if s.enabled else "paused",
            _when(s.next_run_at, s.timing.timezone),
            _when(s.last_run_at, s.timing.timezone),
        )
        for s in found
    ]
    plain_table(header, rows)


@schedule_app.command("add")
def schedule_add(
    kind: Annotated[str, typer.Argument(help="the job type each tick enqueues")],
    cron: CronOpt = None,
    every: EveryOpt = None,
    timezone: TimezoneOpt = "UTC",
    name: Annotated[str | None, typer.Option(help="what it is for (default: the job type)")] = None,
    data: DataOpt = "{}",
    priority: PriorityOpt = None,
    queue: Annotated[str | None, typer.Option()] = None,
    missed: MissedOpt = "skip",
    paused: PausedOpt = False,
    org: Annotated[str | None, typer.Option(help="the organisation it belongs to (who sees it over HTTP)")] = None,
    study: Annotated[str | None, typer.Option(help="narrow it to one study")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Create a schedule and print it as JSON (with its next fire time)."""
    from conveyor.engine.schedules import ScheduleSpec
    from conveyor.model import Owner

    spec = ScheduleSpec(
        name=name or kind,
        job_type=kind,
        data=local.parse_json(data),
        cron=cron,
        interval_seconds=every,
        timezone=timezone,
        priority=local.priority(priority),
        queue=queue,
        enabled=not paused,
        missed_policy=missed,
    )
    owner = Owner(org_id=org, study_id=study, created_by="cli")
    schedule = _schedules(database_url, lambda schedules: schedules.create(spec, owner=owner))
    typer.echo(_schedule_json(schedule))


@schedule_app.command("pause")
def schedule_pause(schedule_id: ScheduleId, database_url: DatabaseOpt = None) -> None:
    """No ticks until resumed."""
    typer.echo(_schedule_json(_schedules(database_url, lambda schedules: schedules.pause(schedule_id))))


@schedule_app.command("resume")
def schedule_resume(schedule_id: ScheduleId, database_url: DatabaseOpt = None) -> None:
    """Ticks again, from the first one after now."""
    typer.echo(_schedule_json(_schedules(database_url, lambda schedules: schedules.resume(schedule_id))))


@schedule_app.command("delete")
def schedule_delete(schedule_id: ScheduleId, database_url: DatabaseOpt = None) -> None:
    """Delete a schedule (the jobs it made stay)."""
    schedule = _schedules(database_url, lambda schedules: schedules.delete(schedule_id))
    typer.echo(f"deleted schedule {schedule.id} ({schedule.name})")
