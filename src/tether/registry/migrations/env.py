"""Alembic's environment for the registry: run on the connection ``tether.registry.db`` passes.

There is no alembic.ini: ``db.migrate`` builds the config in code and hands over its connection
(``config.attributes["connection"]``), so migrations run the same from the CLI and from tests.
"""

from alembic import context

from tether.registry.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
