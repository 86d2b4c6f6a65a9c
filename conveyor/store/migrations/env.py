"""Alembic environment: always given a connection by conveyor.store.migrate."""

from alembic import context

from conveyor.store.migrate import VERSION_TABLE
from conveyor.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
