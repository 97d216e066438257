"""``tether registry serve|user|group|token`` (the team registry's server and its admin) and
``tether login|logout`` (which registry this machine uses).

The admin commands act on the database directly (``--db``, like ``airflow users create``): run
them where the server runs. Each migrates the database first, so ``tether registry user add`` on
an empty database works. Nothing here imports SQLAlchemy or FastAPI until a command runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tether.cli._common import CLIError, JsonOpt, emit_json, err, out
from tether.cli._group import SuggestingGroup

registry_app = typer.Typer(cls=SuggestingGroup, suggest_commands=False, no_args_is_help=True,
                           help="Run a team registry (shared names, versions, sharing) and manage its "
                                "users, groups and tokens (docs/registry.md).")
user_app = typer.Typer(cls=SuggestingGroup, suggest_commands=False, no_args_is_help=True,
                       help="The registry's users.")
group_app = typer.Typer(cls=SuggestingGroup, suggest_commands=False, no_args_is_help=True,
                        help="Groups of users, to share with at once ('group:ml').")
token_app = typer.Typer(cls=SuggestingGroup, suggest_commands=False, no_args_is_help=True,
                        help="Users' bearer tokens (shown once, stored hashed).")
registry_app.add_typer(user_app, name="user")
registry_app.add_typer(group_app, name="group")
quota_app = typer.Typer(cls=SuggestingGroup, suggest_commands=False, no_args_is_help=True,
                        help="Groups' limits on clusters, CPUs and GPUs run at once, and what they use.")
registry_app.add_typer(token_app, name="token")
registry_app.add_typer(quota_app, name="quota")

DbOpt = Annotated[str | None, typer.Option(
    "--db", envvar="TETHER_REGISTRY_DB", metavar="URL", show_default=False,
    help="The database: sqlite:///path/registry.sqlite (default: $TETHER_HOME/registry/registry.sqlite) "
         "or postgresql+psycopg2://user:password@host/dbname.")]


def _registry_imports() -> None:
    try:
        import alembic  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        from tether.errors import install_hint

        raise CLIError(f"the registry server needs {exc.name}, which is not installed",
                       f"Install it with: {install_hint('registry')}") from None


@contextlib.contextmanager
def _session(db: str | None) -> Iterator[Any]:
    _registry_imports()
    from sqlalchemy.orm import Session

    from tether.registry.db import open_db

    with Session(open_db(db)) as session:
        yield session


def _token_note(token: str) -> None:
    out.print(token)
    err.print("[dim]This token is shown once (the registry keeps only its hash). The user runs "
              "`tether login URL --token <it>`, or sets TETHER_TOKEN in pipelines.[/]")


# -- the server ----------------------------------------------------------------------------------


@registry_app.command()
def serve(
    db: DbOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8470,
    key_dir: Annotated[str | None, typer.Option(
        "--key-dir", metavar="DIR", show_default=False,
        help="Where the server's key files live (0600): default beside the SQLite file, else "
             "$TETHER_HOME/registry.")] = None,
    public_url: Annotated[str | None, typer.Option(
        "--public-url", metavar="URL", show_default=False,
        help="The URL clients use (named in grants); default: the one each request came to.")] = None,
    usage_ttl: Annotated[float, typer.Option(
        "--usage-ttl", metavar="HOURS",
        help="Hours a launched cluster counts against quotas unless a bring-up or a connection renews "
             "it (a process that crashed before its teardown frees its share then).")] = 24.0,
) -> None:
    """Run the registry server (FastAPI); the database is migrated to the newest schema first."""
    _registry_imports()
    import uvicorn

    from tether.registry import db as registry_db
    from tether.registry.app import create_app

    url = db or registry_db.default_url()
    app = create_app(url, key_dir, public_url=public_url, engine=registry_db.open_db(url),
                     usage_ttl=usage_ttl * 3600)
    shown = url.split("@")[-1] if "@" in url else url  # never print a password
    err.print(f"tether registry on http://{host}:{port} (database {escape(shown)}; API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


# -- users ---------------------------------------------------------------------------------------


@user_app.command("add")
def user_add(name: str, admin: Annotated[bool, typer.Option(
        "--admin", help="May read, write and share every resource.")] = False, db: DbOpt = None) -> None:
    """Add a user; prints their first token (once)."""
    from tether.registry import admin as registry_admin

    with _session(db) as session:
        token = registry_admin.add_user(session, name, admin=admin)
    err.print(f"Added user {escape(name)}{' (admin)' if admin else ''}.")
    _token_note(token)


@user_app.command("list")
def user_list(db: DbOpt = None, json_out: JsonOpt = False) -> None:
    """The users, their groups, how many resources they own and live tokens they have."""
    from tether.registry import admin as registry_admin

    with _session(db) as session:
        rows = registry_admin.list_users(session)
    if json_out:
        emit_json(rows)
        return
    table = Table("user", "admin", "groups", "resources", "tokens", box=None)
    for row in rows:
        table.add_row(escape(row["name"]), "yes" if row["admin"] else "", escape(", ".join(row["groups"])),
                      str(row["resources"]), str(row["tokens"]))
    out.print(table)


@user_app.command("remove")
def user_remove(name: str, purge: Annotated[bool, typer.Option(
        "--purge", help="Also delete the resources they own.")] = False, db: DbOpt = None) -> None:
    """Remove a user, their tokens and what was shared with them."""
    from tether.registry import admin as registry_admin

    with _session(db) as session:
        removed = registry_admin.remove_user(session, name, purge=purge)
    out.print(f"Removed user {escape(name)}" + (f" and {removed} resources." if removed else "."))


# -- groups --------------------------------------------------------------------------------------


@group_app.command("add")
def group_add(name: str, db: DbOpt = None) -> None:
    """Make a group."""
    from tether.registry import admin as registry_admin

    with _session(db) as session:
        registry_admin.add_group(session, name)
    out.print(f"Added group {escape(name)}.")


@group_app.command("remove")
def group_remove(name: str, db: DbOpt = None) -> None:
    """Remove a group and what was shared with it."""
    from tether.registry import admin as registry_admin

    with _session(db) as session:
        registry_admin.remove_group(session, name)
    out.print(f"Removed group {escape(name)}.")


@group_app.command("add-member")
def group_add_member(group: str, user: str, db: DbOpt = None) -> None:
    """Add USER to GROUP."""
    from tether.registry import admin as registry_admin

    with _session(db) as session:
        registry_admin.add_member(session, group, user)
    out.print(f"{escape(user)} is in {escape(group)}.")


@group_app.command("remove-member")
def group_remove_member(group: str, user: str, db: DbOpt = None) -> None:
    """Take USER out of GROUP."""
    from tether.registry import admin as registry_admin

    with _session(db) as session:
        registry_admin.remove_member(session, group, user)
    out.print(f"{escape(user)} is no longer in {escape(group)}.")


@group_app.command("list")
def group_list(db: DbOpt = None, json_out: JsonOpt = False) -> None:
    """The groups and their members."""
    from tether.registry import admin as registry_admin

    with _session(db) as session:
        rows = registry_admin.list_groups(session)
    if json_out:
        emit_json(rows)
        return
    table = Table("group", "members", box=None)
    for row in rows:
        table.add_row(escape(row["name"]), escape(", ".join(row["members"])))
    out.print(table)


# -- tokens --------------------------------------------------------------------------------------


@token_app.command("create")
def token_create(user: str, name: Annotated[str, typer.Option(
        help="A label for the token (e.g. 'airflow'), to revoke it alone later.")] = "default",
        db: DbOpt = None) -> None:
    """Make a new token for USER; prints it (once)."""
    from tether.registry import admin as registry_admin

    with _session(db) as session:
        token = registry_admin.create_token(session, registry_admin.user(session, user), name)
        session.commit()
    _token_note(token)


@token_app.command("revoke")
def token_revoke(user: str, name: Annotated[str | None, typer.Option(
        help="Revoke only the token with this label (default: all of USER's tokens).")] = None,
        db: DbOpt = None) -> None:
    """Revoke USER's tokens: requests with them get 401 at once."""
    from tether.registry import admin as registry_admin

    with _session(db) as session:
        count = registry_admin.revoke_tokens(session, user, name)
    out.print(f"Revoked {count} token{'s' * (count != 1)} of {escape(user)}.")


# -- quotas --------------------------------------------------------------------------------------


def _limit(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


@quota_app.command("set")
def quota_set(
    group: str,
    clusters: Annotated[int | None, typer.Option(help="Clusters the group's members run at once.")] = None,
    cpus: Annotated[float | None, typer.Option(help="CPUs of those clusters, all nodes.")] = None,
    gpus: Annotated[int | None, typer.Option(help="GPUs of those clusters, all nodes.")] = None,
    db: DbOpt = None,
) -> None:
    """Limit what GROUP's members run at once (a limit left out: none). Replaces its quota."""
    from tether.registry import quotas

    with _session(db) as session:
        quotas.set_quota(session, group, clusters=clusters, cpus=cpus, gpus=gpus)
    out.print(f"Quota of {escape(group)}: {_limit(clusters)} clusters, {_limit(cpus)} cpus, "
              f"{_limit(gpus)} gpus ('-': no limit).")


@quota_app.command("remove")
def quota_remove(group: str, db: DbOpt = None) -> None:
    """Take GROUP's quota away (no limits)."""
    from tether.registry import quotas

    with _session(db) as session:
        quotas.remove_quota(session, group)
    out.print(f"{escape(group)} has no quota now.")


@quota_app.command("list")
def quota_list(db: DbOpt = None, json_out: JsonOpt = False) -> None:
    """The groups' quotas and what their members use now (use/limit)."""
    from tether.registry import quotas

    with _session(db) as session:
        rows = quotas.list_quotas(session)
    if json_out:
        emit_json(rows)
        return
    table = Table("group", "clusters", "cpus", "gpus", box=None)
    for row in rows:
        table.add_row(escape(row["group"]), *(f"{row['use'][w]:g}/{_limit(row['limit'][w])}"
                                              for w in ("clusters", "cpus", "gpus")))
    out.print(table if rows else "No quotas: `tether registry quota set GROUP --clusters N` makes one.")


@quota_app.command("usage")
def quota_usage(db: DbOpt = None, json_out: JsonOpt = False) -> None:
    """The clusters counted now: whose, their size, when they stop counting unless renewed."""
    import time

    from tether.registry import quotas

    with _session(db) as session:
        rows = quotas.usage_of(session)
    if json_out:
        emit_json(rows)
        return
    table = Table("user", "cluster", "launcher", "cpus", "gpus", "expires in", box=None)
    for row in rows:
        table.add_row(escape(row["user"]), escape(row["name"]), escape(row["launcher"]), f"{row['cpus']:g}",
                      f"{row['gpus']:g}", f"{max(row['expires'] - time.time(), 0) / 3600:.1f} h")
    out.print(table if rows else "No clusters are counted.")


@quota_app.command("release")
def quota_release(user: str, cluster: str, db: DbOpt = None) -> None:
    """Stop counting USER's CLUSTER (one that is gone without a teardown)."""
    from tether.registry import admin as registry_admin
    from tether.registry import quotas

    with _session(db) as session:
        found = quotas.release(session, registry_admin.user(session, user), cluster)
    out.print(f"Released {escape(user)}'s {escape(cluster)}." if found
              else f"{escape(user)}'s {escape(cluster)} was not counted.")


# -- the client side -----------------------------------------------------------------------------


def login(url: str, token: Annotated[str | None, typer.Option(
        help="The token `tether registry user add` printed (asked for when not given).")] = None) -> None:
    """Use the team registry at URL from this machine: checks the token, stores both (0600)."""
    from tether.core.registry import remote
    from tether.errors import AuthenticationError

    if token is None:
        token = typer.prompt("Token", hide_input=True)
    try:
        user = remote.login(url, token.strip())
    except AuthenticationError as exc:
        raise CLIError(f"{url} refused this token: {exc}",
                       "Ask the registry's admin for a token (`tether registry token create USER`).") from None
    out.print(f"Logged in to {escape(url)} as {escape(user)}. Names like @/x and /{escape(user)}/x "
              "now live there; ~/x stays on this machine.")


def logout() -> None:
    """Forget the team registry login on this machine (names go back to the local registry)."""
    from tether.core.registry import remote

    out.print("Logged out." if remote.logout() else "Not logged in to a team registry.")


def list_registry(json_out: bool) -> None:
    """``tether ls --registry``: what this user may read in the team registry."""
    from tether.core.registry import remote

    found = remote.client()
    if found is None:
        raise CLIError("no team registry is configured",
                       f"Run `tether login URL`, or set {remote.ENV_URL} and {remote.ENV_TOKEN}.")
    rows = found.list()
    if json_out:
        emit_json(rows)
        return
    if not rows:
        out.print(f"Nothing in {escape(found.url)} that you may read yet: save one from Python, e.g. "
                  "tether.cluster(name='dev', launcher='local').save().")
        return
    table = Table("name", "type", "owner", "version", "access", box=None)
    for row in rows:
        table.add_row(escape(row["path"]), escape(row["type"]), escape(row["owner"]),
                      str(row["current_version"]), row["access"])
    out.print(f"In {escape(found.url)}:")
    out.print(table)
