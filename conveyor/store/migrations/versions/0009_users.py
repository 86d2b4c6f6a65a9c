"""Local users (argon2id password hashes, lock-out state) and e-signatures bound to audit
records. On PostgreSQL the signatures are append-only as the audit trail is (the triggers of
0005's function refuse UPDATE, DELETE and TRUNCATE).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from conveyor.store.schema import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conveyor_users",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.Column("password_changed_at", UTCDateTime(), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("last_sign_in_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_conveyor_users_org", "conveyor_users", ["org_id"])
    op.create_table(
        "conveyor_signatures",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("record_hash", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=200), nullable=True),
        sa.Column("org_id", sa.String(length=200), nullable=True),
        sa.Column("signer_id", sa.String(length=200), nullable=False),
        sa.Column("signer_name", sa.String(length=200), nullable=False),
        sa.Column("meaning", sa.String(length=64), nullable=False),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
        sa.Column("signed_by_caller", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_conveyor_signatures_object", "conveyor_signatures", ["object_type", "object_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER conveyor_signatures_no_change BEFORE UPDATE OR DELETE ON conveyor_signatures "
            "FOR EACH ROW EXECUTE FUNCTION conveyor_audit_refuse()"
        )
        op.execute(
            "CREATE TRIGGER conveyor_signatures_no_truncate BEFORE TRUNCATE ON conveyor_signatures "
            "FOR EACH STATEMENT EXECUTE FUNCTION conveyor_audit_refuse()"
        )


def downgrade() -> None:
    op.drop_index("ix_conveyor_signatures_object", table_name="conveyor_signatures")
    op.drop_table("conveyor_signatures")
    op.drop_index("ix_conveyor_users_org", table_name="conveyor_users")
    op.drop_table("conveyor_users")
