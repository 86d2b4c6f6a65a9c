"""The tables, declared once for both dialects. Alembic's revisions are written against this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from conveyor.model import MAX_KEY_LENGTH, MAX_NAME_LENGTH, MAX_QUEUE_LENGTH

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in Python on both dialects.

    PostgreSQL keeps `timestamptz`; SQLite has no time zones, so values are stored as naive
    UTC text in one fixed format, which also keeps them ordered when compared as text.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store: use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQL on SQLite hands back the stored text
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json = sa.JSON().with_variant(JSONB(), "postgresql")

jobs = sa.Table(
    "conveyor_jobs",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),  # UUIDv7: ordered by creation
    sa.Column("kind", sa.String(MAX_NAME_LENGTH), nullable=False),
    sa.Column("queue", sa.String(MAX_QUEUE_LENGTH), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.SmallInteger(), nullable=False),
    sa.Column("data", Json, nullable=False),
    sa.Column("result", Json),
    sa.Column("error", Json),
    sa.Column("item_errors", Json),
    sa.Column("item_errors_dropped", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("progress", Json),
    sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer(), nullable=False),
    sa.Column("timeout_seconds", sa.Float()),
    sa.Column("run_at", UTCDateTime(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("completed_at", UTCDateTime()),
    sa.Column("worker_id", sa.String(200)),
    sa.Column("lease_expires_at", UTCDateTime()),
    sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("batch_id", sa.Uuid()),
    sa.Column("schedule_id", sa.String(MAX_NAME_LENGTH)),
    sa.Column("retry_of", sa.Uuid()),
    sa.Column("cache_key", sa.String(MAX_KEY_LENGTH)),
    sa.Column("idempotency_key", sa.String(MAX_KEY_LENGTH)),
    sa.Column("labels", Json),
    sa.Column("file_info", Json),
    sa.Column("owner_user_id", sa.String(MAX_NAME_LENGTH)),
    sa.Column("owner_org_id", sa.String(MAX_NAME_LENGTH)),
    sa.Column("owner_study_id", sa.String(MAX_NAME_LENGTH)),
    sa.Column("created_by", sa.String(MAX_NAME_LENGTH)),
    # The claim reads one status, in priority then arrival order, per queue.
    sa.Index(
        "ix_conveyor_jobs_claim",
        "queue",
        sa.text("priority DESC"),
        "id",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
    sa.Index(
        "ix_conveyor_jobs_scheduled",
        "run_at",
        postgresql_where=sa.text("status = 'scheduled'"),
        sqlite_where=sa.text("status = 'scheduled'"),
    ),
    sa.Index(
        "ix_conveyor_jobs_running",
        "worker_id",
        "lease_expires_at",
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    ),
    sa.Index(
        "uq_conveyor_jobs_idempotency_key",
        "idempotency_key",
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    ),
    # No index per sort key of the jobs list (conveyor/store/ordering.py): each one costs every
    # enqueue, claim and outcome write an index entry (three more cost bulk enqueue's server
    # half again its instructions per row); sorts by priority, due or finish time sort. Nor
    # one on created_at alone: a listing of every status in creation order reads this one a
    # status at a time and merges (ordering.page; migration 0016).
    sa.Index("ix_conveyor_jobs_status_created", "status", "created_at"),
    sa.Index("ix_conveyor_jobs_kind_created", "kind", "created_at"),
    # Retention prunes, and alerts read, finished jobs by status and completion time.
    sa.Index(
        "ix_conveyor_jobs_finished",
        "status",
        "completed_at",
        postgresql_where=sa.text("completed_at IS NOT NULL"),
        sqlite_where=sa.text("completed_at IS NOT NULL"),
    ),
    # Partial: owners are looked up by equality only, and ownerless jobs skip two entries.
    sa.Index(
        "ix_conveyor_jobs_org_created",
        "owner_org_id",
        "created_at",
        postgresql_where=sa.text("owner_org_id IS NOT NULL"),
        sqlite_where=sa.text("owner_org_id IS NOT NULL"),
    ),
    sa.Index(
        "ix_conveyor_jobs_user_created",
        "owner_user_id",
        "created_at",
        postgresql_where=sa.text("owner_user_id IS NOT NULL"),
        sqlite_where=sa.text("owner_user_id IS NOT NULL"),
    ),
    sa.Index(
        "ix_conveyor_jobs_batch",
        "batch_id",
        postgresql_where=sa.text("batch_id IS NOT NULL"),
        sqlite_where=sa.text("batch_id IS NOT NULL"),
    ),
)

job_logs = sa.Table(
    "conveyor_job_logs",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Uuid(), sa.ForeignKey("conveyor_jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("ts", UTCDateTime(), nullable=False),
    sa.Column("level", sa.SmallInteger(), nullable=False),
    sa.Column("component", sa.String(200)),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("attempt", sa.Integer()),
    sa.Index("ix_conveyor_job_logs_job", "job_id", "id"),
)

# --- the control plane: who may call, which queues are paused, which workers are alive -----

api_keys = sa.Table(
    "conveyor_api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),  # public: the key's second part
    sa.Column("secret_hash", sa.String(64), nullable=False),  # SHA-256 hex of the secret part
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("org_id", sa.String(200)),
    sa.Column("study_id", sa.String(200)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(200)),
    sa.Column("revoked_at", UTCDateTime()),
)

queue_states = sa.Table(
    "conveyor_queues",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("changed_at", UTCDateTime(), nullable=False),
    sa.Column("changed_by", sa.String(200)),
)

workers = sa.Table(
    "conveyor_workers",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("hostname", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("queues", Json, nullable=False),
    sa.Column("concurrency", sa.Integer(), nullable=False),
    sa.Column("running", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
)

# --- roll-ups (PostgreSQL): counts and per-minute activity ---------------------------------
# Signed deltas are appended here (append-only: concurrent writers never wait on one counter
# row): by the statements that store jobs (migration 0017), and by statement-level triggers on
# conveyor_jobs for changes and deletes. Maintenance folds them (compact_rollups). A count is
# the sum over matching rows, so it is right between folds too. SQLite counts the jobs table.

job_counts = sa.Table(
    "conveyor_job_counts",
    metadata,
    sa.Column("org_id", sa.String(200)),
    sa.Column("user_id", sa.String(200)),
    sa.Column("study_id", sa.String(200)),
    sa.Column("kind", sa.String(200), nullable=False),
    sa.Column("queue", sa.String(100), nullable=False),
    sa.Column("priority", sa.SmallInteger(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("n", sa.BigInteger(), nullable=False),
)

job_minutes = sa.Table(
    "conveyor_job_minutes",
    metadata,
    sa.Column("minute", UTCDateTime(), nullable=False),
    sa.Column("org_id", sa.String(200)),
    sa.Column("user_id", sa.String(200)),
    sa.Column("study_id", sa.String(200)),
    sa.Column("kind", sa.String(200), nullable=False),
    sa.Column("queue", sa.String(100), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # a finished status; 'running' for samples
    sa.Column("n", sa.BigInteger(), nullable=False),  # jobs that reached the status in the minute
    sa.Column("seconds", sa.Float(), nullable=False),  # their run time (started -> completed), summed
    sa.Column("running_peak", sa.Integer(), nullable=False, server_default="0"),  # most seen running
    sa.Index("ix_conveyor_job_minutes_minute", "minute"),
)

# --- schedules: cron and interval schedules, and the leases that elect one scheduler -----------

schedules = sa.Table(
    "conveyor_schedules",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),  # a UUIDv7, as text: jobs name it in schedule_id
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(200), nullable=False),
    sa.Column("data", Json, nullable=False),
    sa.Column("priority", sa.SmallInteger()),  # NULL: the job type's
    sa.Column("queue", sa.String(100)),  # NULL: the job type's
    sa.Column("cron", sa.String(200)),  # a cron expression, or NULL for an interval
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("interval_seconds", sa.Float()),
    sa.Column("enabled", sa.Boolean(), nullable=False),
    sa.Column("missed_policy", sa.String(16), nullable=False),
    sa.Column("owner_user_id", sa.String(200)),
    sa.Column("owner_org_id", sa.String(200)),
    sa.Column("owner_study_id", sa.String(200)),
    sa.Column("created_by", sa.String(200)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("last_run_at", UTCDateTime()),  # the latest tick that fired
    sa.Column("next_run_at", UTCDateTime()),  # the first tick not yet fired; NULL while paused
    # The scheduler reads the due ones, soonest first.
    sa.Index("ix_conveyor_schedules_next_run", "next_run_at"),
    sa.Index("ix_conveyor_schedules_org_created", "owner_org_id", "created_at"),
)

# One row per leader-only service: who holds it, until when (on the database's clock).
leaders = sa.Table(
    "conveyor_leaders",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("elected_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
)

# --- the audit trail: append-only, hash-chained (see conveyor.audit) -----------------------------

audit = sa.Table(
    "conveyor_audit",
    metadata,
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),  # 1, 2, … given by the sealer
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.Column("actor_id", sa.String(200), nullable=False),
    sa.Column("actor_name", sa.String(200)),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object_type", sa.String(32), nullable=False),
    sa.Column("object_id", sa.String(200)),
    sa.Column("before", Json),
    sa.Column("after", Json),
    sa.Column("request_id", sa.String(64)),
    sa.Column("client_address", sa.String(64)),
    sa.Column("org_id", sa.String(200)),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_conveyor_audit_org_seq", "org_id", "seq"),
    sa.Index("ix_conveyor_audit_object", "object_type", "object_id"),
    sa.Index("ix_conveyor_audit_recorded_at", "recorded_at"),
)

# Records not yet sealed into the chain: written with the change they record (no lock), moved
# into conveyor_audit by the sealer (conveyor.store.audit), which deletes them here as it does.
audit_journal = sa.Table(
    "conveyor_audit_journal",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
    sa.Column("actor_id", sa.String(200), nullable=False),
    sa.Column("actor_name", sa.String(200)),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object_type", sa.String(32), nullable=False),
    sa.Column("object_id", sa.String(200)),
    sa.Column("before", Json),
    sa.Column("after", Json),
    sa.Column("request_id", sa.String(64)),
    sa.Column("client_address", sa.String(64)),
    sa.Column("org_id", sa.String(200)),
    # Ids never reused (migration 0018): a seal takes the rows up to the newest id it saw.
    sqlite_autoincrement=True,
)

# The jobs a chained record names in a list (`after.jobIds`: a bulk enqueue's job.created, a
# worker's job.completed, a batch.created, a page's job.read), one row each, written by the
# sealer with the record: how a job's records are found without reading every record's JSON.
# Derived from the chain (not part of what it hashes).
audit_subjects = sa.Table(
    "conveyor_audit_subjects",
    metadata,
    sa.Column("job_id", sa.String(200), primary_key=True),
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
)

# The chain's head as it was at some moment, signed when CONVEYOR_AUDIT_KEY is set.
audit_checkpoints = sa.Table(
    "conveyor_audit_checkpoints",
    metadata,
    sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("signature", sa.String(64)),
)

# --- batches and the result cache ----------------------------------------------------------------

# A batch: jobs submitted together (conveyor_jobs.batch_id names it). Members beyond its
# parallel_limit wait as `scheduled` with run_at = model.HELD_UNTIL (out of the claim's and the
# stager's sight) until a member finishes and one is released (store/batches.py).
batches = sa.Table(
    "conveyor_batches",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),  # a UUIDv7
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("parallel_limit", sa.Integer()),  # NULL: no limit
    sa.Column("fail_fast", sa.Boolean(), nullable=False),
    sa.Column("size", sa.Integer(), nullable=False),  # jobs submitted with it
    sa.Column("owner_user_id", sa.String(200)),
    sa.Column("owner_org_id", sa.String(200)),
    sa.Column("owner_study_id", sa.String(200)),
    sa.Column("created_by", sa.String(200)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("cancelled_at", UTCDateTime()),  # cancelled by hand, or by fail_fast
    sa.Column("cancel_reason", sa.String(32)),  # "cancelled" or "fail_fast"
    sa.Column("completion_announced_at", UTCDateTime()),  # batch.completed went to the webhook outbox
    sa.Index("ix_conveyor_batches_org_created", "owner_org_id", "created_at"),
)

# The result cache's entries: for one scope (who may share results: an organisation, narrowed
# to a study or a user as the requester's visibility is) and one job type's cache key, the job
# whose result is reused — in flight or completed. The primary key is the guard that makes
# concurrent identical requests run once; hits and misses are counted on the entry.
cache_entries = sa.Table(
    "conveyor_cache_entries",
    metadata,
    sa.Column("scope", sa.String(700), primary_key=True),
    sa.Column("kind", sa.String(200), primary_key=True),
    sa.Column("cache_key", sa.String(500), primary_key=True),
    sa.Column("org_id", sa.String(200)),
    sa.Column("study_id", sa.String(200)),
    sa.Column("user_id", sa.String(200)),
    sa.Column("job_id", sa.Uuid(), nullable=False),
    sa.Column("hits", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("misses", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_conveyor_cache_entries_org", "org_id"),
)

# Job-creation rate windows: how many jobs one principal created in one fixed window of
# `seconds` (60, 3600) starting at `window_start`. Shared by every API process, so a limit
# holds however many there are; windows older than the longest are pruned by the leader.
rate_windows = sa.Table(
    "conveyor_rate_windows",
    metadata,
    sa.Column("principal", sa.String(500), primary_key=True),
    sa.Column("seconds", sa.Integer(), primary_key=True),
    sa.Column("window_start", UTCDateTime(), primary_key=True),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Index("ix_conveyor_rate_windows_start", "window_start"),
)

# --- local users and e-signatures (21 CFR Part 11 §11.50, §11.70, §11.200, §11.300) ---------------

# Local user accounts: an argon2id password hash (never the password), the lock-out state.
users = sa.Table(
    "conveyor_users",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),  # the user id they sign in with
    sa.Column("name", sa.String(200), nullable=False),  # printed (full) name, shown with signatures
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("org_id", sa.String(200)),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("failed_attempts", sa.Integer(), nullable=False, server_default="0"),  # consecutive
    sa.Column("locked_until", UTCDateTime()),
    sa.Column("password_changed_at", UTCDateTime(), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("created_by", sa.String(200)),
    sa.Column("last_sign_in_at", UTCDateTime()),
    sa.Index("ix_conveyor_users_org", "org_id"),
)

# E-signatures: each bound to the content hash of the audit record it signs (conveyor.audit),
# written in the same transaction; append-only (PostgreSQL: triggers, as the audit trail's).
signatures = sa.Table(
    "conveyor_signatures",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("record_hash", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object_type", sa.String(32), nullable=False),
    sa.Column("object_id", sa.String(200)),
    sa.Column("org_id", sa.String(200)),
    sa.Column("signer_id", sa.String(200), nullable=False),
    sa.Column("signer_name", sa.String(200), nullable=False),
    sa.Column("meaning", sa.String(64), nullable=False),
    sa.Column("signed_at", UTCDateTime(), nullable=False),
    sa.Column("signed_by_caller", sa.String(200), nullable=False),
    sa.Index("ix_conveyor_signatures_object", "object_type", "object_id"),
)

# --- webhooks, alerts ----------------------------------------------------------------------------

# A subscription: an organisation's URL told of the events it names (conveyor.webhooks).
webhooks = sa.Table(
    "conveyor_webhooks",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),  # a UUIDv7
    sa.Column("org_id", sa.String(200)),  # NULL: jobs of no organisation (super admins only)
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("events", Json, nullable=False),  # a list of event types
    sa.Column("secret", sa.Text(), nullable=False),  # sealed with the keyring when one is configured
    sa.Column("description", sa.String(200)),
    sa.Column("enabled", sa.Boolean(), nullable=False),
    sa.Column("created_by", sa.String(200)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_conveyor_webhooks_org", "org_id"),
)

# The outbox: events written in the transaction that made them happen (an outcome, a cancel, an
# alert), for organisations with a subscription that wants them; the leader turns each into
# delivery jobs and deletes it (conveyor.webhooks.Dispatcher).
webhook_events = sa.Table(
    "conveyor_webhook_events",
    metadata,
    # A UUID, not a serial: SQLite may hand a deleted row's integer out again, and the id is part
    # of each delivery's idempotency key.
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("org_id", sa.String(200)),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("job_id", sa.Uuid()),
    sa.Column("batch_id", sa.Uuid()),
    sa.Column("payload", Json),  # alerts carry theirs; job and batch events are read when dispatched
)

# One row per delivery attempt: what the receiver answered, and how long it took.
webhook_deliveries = sa.Table(
    "conveyor_webhook_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("webhook_id", sa.Uuid(), nullable=False),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("job_id", sa.Uuid(), nullable=False),  # the delivery job
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("status_code", sa.Integer()),  # NULL: no answer (refused, timed out, unreachable)
    sa.Column("success", sa.Boolean(), nullable=False),
    sa.Column("duration_ms", sa.Float(), nullable=False),
    sa.Column("error", sa.String(500)),
    sa.Column("delivered_at", UTCDateTime(), nullable=False),
    sa.Index("ix_conveyor_webhook_deliveries_webhook", "webhook_id", "id"),
    sa.Index("ix_conveyor_webhook_deliveries_at", "delivered_at"),
)

# Alerts (seed 001's monitoring): one row per raised alert of one job type in one organisation;
# `cleared_at` is set when it recovers. At most one uncleared row per (org, kind, metric).
alerts = sa.Table(
    "conveyor_alerts",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),  # a UUIDv7
    sa.Column("org_id", sa.String(200)),
    sa.Column("kind", sa.String(200), nullable=False),
    sa.Column("metric", sa.String(32), nullable=False),  # error_rate or latency_p95_ms
    sa.Column("threshold", sa.Float(), nullable=False),
    sa.Column("value", sa.Float(), nullable=False),  # when raised
    sa.Column("samples", sa.Integer(), nullable=False),
    sa.Column("raised_at", UTCDateTime(), nullable=False),
    sa.Column("cleared_at", UTCDateTime()),
    sa.Column("cleared_value", sa.Float()),
    sa.Index("ix_conveyor_alerts_org_raised", "org_id", "raised_at"),
    sa.Index(
        "ix_conveyor_alerts_active",
        "kind",
        postgresql_where=sa.text("cleared_at IS NULL"),
        sqlite_where=sa.text("cleared_at IS NULL"),
    ),
)

# --- job counters ----------------------------------------------------------------------------------

# Numbers a job reports (Context.count), written with the outcome that finished it, so that
# the database sums them over an organisation and a time range. Names only from a safe
# alphabet and values only numbers: no payload ever lands here unsealed.
job_counters = sa.Table(
    "conveyor_job_counters",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.Uuid(), nullable=False),
    sa.Column("org_id", sa.String(200)),
    sa.Column("kind", sa.String(200), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("value", sa.Float(), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),  # when the job finished
    sa.Index("ix_conveyor_job_counters_org_name_at", "org_id", "name", "recorded_at"),
)

# --- drug interaction table (operator data; conveyor.interactions) ------------------------------

# Each load of an operator's table: its name, version and content hash. The newest row names
# the table in force; the older rows are the history of what was loaded when.
interaction_tables = sa.Table(
    "conveyor_interaction_tables",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),  # a UUIDv7: ordered by load
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),  # of the interactions file, then the synonyms file
    sa.Column("pairs", sa.Integer(), nullable=False),
    sa.Column("synonyms", sa.Integer(), nullable=False),
    sa.Column("loaded_at", UTCDateTime(), nullable=False),
    sa.Column("loaded_by", sa.String(200)),
)

# The pairs of the table in force, names normalised (conveyor.interactions.normalise) and
# ordered (drug_a < drug_b), so that an unordered pair has one row.
interactions = sa.Table(
    "conveyor_interactions",
    metadata,
    sa.Column("drug_a", sa.String(200), primary_key=True),
    sa.Column("drug_b", sa.String(200), primary_key=True),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("description", sa.Text()),
    sa.Column("mechanism", sa.Text()),
    sa.Column("management", sa.Text()),
    sa.Column("evidence", sa.Text()),
    sa.Column("source", sa.String(500)),
    sa.Column("source_version", sa.String(100)),
    sa.Column("last_reviewed", sa.String(10)),  # an ISO date
)

# Other names of an ingredient (brands, spellings), normalised like the pairs.
interaction_synonyms = sa.Table(
    "conveyor_interaction_synonyms",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("ingredient", sa.String(200), nullable=False),
)

# Pack state: small JSON documents a pack keeps between jobs (a patient's regimen and supply),
# namespaced, per owner scope (`org:<id>`, or `user:<id>` for jobs of no organisation). Values
# are sealed with the keyring, bound to (scope, namespace, key); `version` counts writes, for
# compare-and-set. Keys are stored in clear: packs keep identifying details out of them.
pack_state = sa.Table(
    "conveyor_pack_state",
    metadata,
    sa.Column("scope", sa.String(200), primary_key=True),
    sa.Column("namespace", sa.String(100), primary_key=True),
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("value", Json, nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# Notifications: one row per message to one recipient (a reminder, a refill alert), seen by who
# would see the recipient's jobs. The body is sealed; `delivery_key` is unique, so one firing
# (a tick's job, however often it runs) writes one row, and its webhook event, once.
notifications = sa.Table(
    "conveyor_notifications",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),  # a UUIDv7
    sa.Column("org_id", sa.String(200)),
    sa.Column("study_id", sa.String(200)),
    sa.Column("user_id", sa.String(200)),  # the recipient
    sa.Column("kind", sa.String(100), nullable=False),
    sa.Column("body", Json, nullable=False),  # sealed when the installation has a keyring
    sa.Column("delivery_key", sa.String(300), nullable=False),
    sa.Column("job_id", sa.Uuid()),  # the job that wrote it
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("read_at", UTCDateTime()),
    sa.UniqueConstraint("delivery_key", name="uq_conveyor_notifications_delivery"),
    sa.Index("ix_conveyor_notifications_owner", "org_id", "user_id", "created_at"),
)
