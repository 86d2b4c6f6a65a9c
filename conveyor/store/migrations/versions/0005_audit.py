"""The audit trail: the journal of records not yet sealed, the hash-chained records and their
checkpoints; on PostgreSQL, triggers that refuse UPDATE, DELETE and TRUNCATE of the chain and
its checkpoints, and UPDATE of the journal (whose rows the sealer deletes as it chains them).

The application's role owns these tables, so REVOKE cannot stop it: the triggers are what
refuses a change (an owner can still disable them; that is what verify is for).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from conveyor.store.schema import Json, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("conveyor_audit", "conveyor_audit_checkpoints")

REFUSE = """
CREATE FUNCTION conveyor_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$
"""


def upgrade() -> None:
    op.create_table(
        "conveyor_audit_journal",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.String(length=200), nullable=False),
        sa.Column("actor_name", sa.String(length=200), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=200), nullable=True),
        sa.Column("before", Json, nullable=True),
        sa.Column("after", Json, nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "conveyor_audit",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.String(length=200), nullable=False),
        sa.Column("actor_name", sa.String(length=200), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=200), nullable=True),
        sa.Column("before", Json, nullable=True),
        sa.Column("after", Json, nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=True),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_conveyor_audit_org_seq", "conveyor_audit", ["org_id", "seq"])
    op.create_index("ix_conveyor_audit_object", "conveyor_audit", ["object_type", "object_id"])
    op.create_index("ix_conveyor_audit_recorded_at", "conveyor_audit", ["recorded_at"])
    op.create_table(
        "conveyor_audit_checkpoints",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(REFUSE)
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION conveyor_audit_refuse()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION conveyor_audit_refuse()"
            )
        op.execute(
            "CREATE TRIGGER conveyor_audit_journal_no_change BEFORE UPDATE ON conveyor_audit_journal "
            "FOR EACH ROW EXECUTE FUNCTION conveyor_audit_refuse()"
        )


def downgrade() -> None:
    op.drop_table("conveyor_audit_checkpoints")
    op.drop_index("ix_conveyor_audit_recorded_at", table_name="conveyor_audit")
    op.drop_index("ix_conveyor_audit_object", table_name="conveyor_audit")
    op.drop_index("ix_conveyor_audit_org_seq", table_name="conveyor_audit")
    op.drop_table("conveyor_audit")
    op.drop_table("conveyor_audit_journal")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION conveyor_audit_refuse()")
