"""interaction_check (seed 001): every pair of a person's medicines against the drug
interaction table the operator loaded (README, "Drug interaction table").

The table lives in conveyor's database, loaded by `conveyor medication load-interactions`;
the job reads it through the worker's "interactions" service (conveyor.interactions), which
checks all pairs in one read transaction of the store the worker already holds, so that the
pack opens no database of its own and the job and the operator command share one reading
of names (normalising, synonyms, unordered pairs).

The result names the table and version checked against, every interaction found and every
name the table does not know, and says what an empty finding means: nothing in this table,
which is not the same as safe. Log lines and errors carry counts only, never a name.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from conveyor import Context, PermanentError, Registry, RetryableError

MAX_MEDICATIONS = 50

jobtypes = Registry()

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class InteractionCheckInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Name
    medications: list[Name] = Field(min_length=2, max_length=MAX_MEDICATIONS)


NOT_SAFE = (
    "Checked against the drug interaction table named here only. An interaction that table does not "
    "hold is not reported, so no interaction found does not mean the combination is safe; names "
    "listed as unmatched were not checked at all. Not a substitute for a pharmacist's or prescriber's review."
)


@jobtypes.job_type("interaction_check", sensitive=True, internal=True)
async def interaction_check(ctx: Context, data: InteractionCheckInput) -> dict[str, Any]:
    try:
        check = await ctx.service("interactions").check(data.medications)
    except PermanentError:
        raise  # no table loaded: its message names none of the medicines
    except Exception as exc:  # noqa: BLE001 - any failure, reported without its text
        # A driver's error may quote the statement's parameters (the names), and a job's
        # error is stored unsealed: keep only its type, and no chained traceback.
        raise RetryableError(f"reading the interaction table failed ({type(exc).__name__})") from None
    found = [
        {
            "drugs": list(f.names),
            "ingredients": list(f.ingredients),
            "severity": f.row.severity,
            "description": f.row.description,
            "mechanism": f.row.mechanism,
            "management": f.row.management,
            "evidence": f.row.evidence,
            "source": f.row.source,
            "source_version": f.row.source_version,
            "last_reviewed": f.row.last_reviewed,
        }
        for f in check.findings
    ]
    ctx.count("interactions_found", len(found))
    ctx.count("medications_checked", len(data.medications))
    ctx.count("medications_unmatched", len(check.unmatched))
    table = check.table
    ctx.info(
        f"{len(data.medications)} medicines checked against {table.name} {table.version}: "
        f"{len(found)} interaction(s), {len(check.unmatched)} name(s) not in the table",
        component="interaction_check",
    )
    return {
        "user_id": data.user_id,
        "medications": data.medications,
        "checked_as": check.resolved,
        "interactions": found,
        "interactions_found": len(found),
        "highest_severity": check.highest_severity,
        "unmatched": check.unmatched,
        "table": {
            "name": table.name,
            "version": table.version,
            "sha256": table.sha256,
            "loaded_at": table.loaded_at.isoformat().replace("+00:00", "Z"),
        },
        "notice": NOT_SAFE,
    }
