"""SQLite: the audit journal's ids are never reused.

A seal chains the journal rows up to the newest id it saw when it began, and leaves rows
journaled meanwhile to the next seal (conveyor.engine.audit). SQLite gives a new row the
largest id present plus one unless the table is AUTOINCREMENT, so once a seal emptied the
journal the next rows took ids it had already passed. PostgreSQL's ids come from a sequence:
nothing to do there.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Rebuilt with the rows it holds (the journal is small: sealed every scheduler pass).
        with op.batch_alter_table(
            "conveyor_audit_journal", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("conveyor_audit_journal", recreate="always"):
            pass
