"""The registry's database: its URL, an engine that suits it, and migrating it to the newest schema.

SQLite (the default, one file) gets WAL and foreign keys, so the server and an admin command can
use the file at once and deletes cascade; PostgreSQL is any SQLAlchemy URL (``postgresql+psycopg2://
user@host/db``, the driver from the ``registry-postgres`` extra). :func:`migrate` runs Alembic's
``upgrade head`` with the migrations shipped in ``migrations/``: on an empty database it makes the
whole schema; on a current one it does nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether.errors import ConfigError
from tether.state import registry_server_dir

MIGRATIONS = Path(__file__).with_name("migrations")


def default_url() -> str:
    """``$TETHER_HOME/registry/registry.sqlite``."""
    return f"sqlite:///{registry_server_dir() / 'registry.sqlite'}"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database or an in-memory one)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


def default_key_dir(url: str) -> Path:
    """The folder of a SQLite file, else ``$TETHER_HOME/registry``: never inside the database."""
    file = sqlite_file(url)
    return file.parent if file is not None else registry_server_dir()


def engine(url: str) -> Any:
    """An engine for ``url`` (a SQLite file's folder is made, 0700)."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    file = sqlite_file(url)
    try:
        if file is None:
            made = create_engine(url, pool_pre_ping=True)
        else:
            file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            made = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError(f"bad database URL {url!r} ({exc}): use sqlite:///path/registry.sqlite or "
                          "postgresql+psycopg2://user:password@host/dbname") from None
    except ImportError as exc:
        raise ConfigError(f"the driver for {url.split(':', 1)[0]} is not installed ({exc}); for "
                          "PostgreSQL install tether's registry-postgres extra (psycopg2-binary)") from None
    if file is not None:
        @event.listens_for(made, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()
    return made


def migrate(made: Any) -> None:
    """Alembic ``upgrade head`` on ``made`` (an engine): the schema this tether version expects."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with made.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_db(url: str | None = None) -> Any:
    """The engine of ``url`` (default: :func:`default_url`), migrated to the newest schema."""
    url = url or default_url()
    made = engine(url)
    migrate(made)
    file = sqlite_file(url)
    if file is not None:
        file.chmod(0o600)  # token hashes and configs: the server's user only
    return made
