"""`conveyor cache stats|clear`: the result cache, over HTTP or on the database (the rule in
remote.py)."""

import json
from typing import Annotated, Any

import typer

from conveyor.cli import local
from conveyor.cli.exits import Exit, stop
from conveyor.cli.local import DatabaseOpt
from conveyor.cli.output import JsonOpt, group, print_json, print_table, when
from conveyor.cli.remote import call, use_database
from conveyor.cli.signing import MeaningOpt, SignAsOpt, signed_call

cache_app = group("The result cache: its figures; forget cached results.")

OrgOpt = Annotated[
    str | None, typer.Option(help="on the database: one organisation's entries (default: every organisation's)")
]
LabelOpt = Annotated[list[str] | None, typer.Option("--label", help="only results of jobs with this label, key:value")]


def _scope(org: str | None) -> Any:
    from conveyor.model import Visibility

    return Visibility(org_id=org) if org is not None else None


@cache_app.command("stats")
def cache_stats(as_json: JsonOpt = False, org: OrgOpt = None, database_url: DatabaseOpt = None) -> None:
    """Cached results (fresh within CACHE_TTL), their size, oldest and newest, and the hit rate."""
    if use_database(database_url):
        _stats_from_database(org, database_url)
        return
    found = call(lambda c: c.cache_stats())
    if as_json:
        print_json(found)
        return
    print_table(
        ("RESULTS", "HIT RATE", "SIZE", "OLDEST", "NEWEST"),
        [(found.total_cached_results, f"{found.cache_hit_rate:.1f}%", f"{found.total_cache_size_mb:.2f} MB",
          when(found.oldest_cached_result), when(found.newest_cached_result))],
    )  # fmt: skip


def _stats_from_database(org: str | None, database_url: str | None) -> None:
    async def run() -> Any:
        async with local.conveyor(database_url) as conveyor:
            return await conveyor.cache.stats(visible_to=_scope(org))

    stats = local.run(run())
    shown = {
        "entries": stats.entries,
        "hit_rate": stats.hit_rate,
        "hits": stats.hits,
        "misses": stats.misses,
        "size_bytes": stats.size_bytes,
        "oldest": stats.oldest.isoformat() if stats.oldest else None,
        "newest": stats.newest.isoformat() if stats.newest else None,
    }
    typer.echo(json.dumps(shown, indent=2))


@cache_app.command("clear")
def cache_clear(
    yes: Annotated[bool, typer.Option("--yes", help="confirm: clearing cannot be undone")] = False,
    label: LabelOpt = None,
    sign_as: SignAsOpt = None,
    meaning: MeaningOpt = None,
    as_json: JsonOpt = False,
    org: OrgOpt = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Forget completed results (their jobs stay): identical requests run again. Over HTTP the
    server may demand an e-signature (--sign-as, --meaning); on the database none is asked."""
    if not yes:
        stop(Exit.USAGE, "clearing the cache cannot be undone: add --yes to confirm")
    labels = local.labels(label)
    if use_database(database_url):

        async def run() -> int:
            async with local.conveyor(database_url) as conveyor:
                return await conveyor.cache.clear(visible_to=_scope(org), labels=labels)

        typer.echo(json.dumps({"cleared_results": local.run(run())}))
        return
    cleared = signed_call(
        lambda c, signature: c.clear_cache(labels=labels or None, signature=signature), sign_as, meaning
    )
    typer.echo(json.dumps({"cleared_results": cleared}) if as_json else f"cleared {cleared} cached results")
