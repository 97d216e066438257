"""The shipped Alembic migrations make, from an empty database, exactly the schema the models
describe (SQLite and PostgreSQL); running them again changes nothing."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from tether.registry import db
from tether.registry.models import Base


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_from_an_empty_database(backend, tmp_path, request):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh' / 'registry.sqlite'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    engine = db.open_db(url)
    try:
        head = ScriptDirectory(str(db.MIGRATIONS)).get_current_head()
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert context.get_current_revision() == head
            assert compare_metadata(context, Base.metadata) == []
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        db.migrate(engine)  # at head already: nothing to do
        with engine.connect() as connection:
            assert MigrationContext.configure(connection).get_current_revision() == head
    finally:
        engine.dispose()
