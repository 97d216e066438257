"""``tether registry user|group|token`` on the database (in this process: typer's runner, the same
code), and ``tether login|logout`` (the console script) against a running server."""

from __future__ import annotations

import json

from registry_support import RegistryServer, tether_cli
from typer.testing import CliRunner

from tether.cli import app


def admin(*args: str):
    """``tether registry ARGS`` in this process (an error the console script prints is ``.exception``)."""
    return CliRunner().invoke(app, ["registry", *args])


def test_admin_commands_and_login(tmp_path):
    db = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    added = tether_cli("registry", "user", "add", "alice", "--admin", "--db", db, home=tmp_path)
    assert added.returncode == 0 and "shown once" in added.stderr
    alice = added.stdout.strip()
    again = admin("user", "add", "alice", "--db", db)
    assert again.exit_code == 1 and "exists already" in str(again.exception)
    assert admin("user", "add", "bob", "--db", db).exit_code == 0
    assert admin("group", "add", "ml", "--db", db).exit_code == 0
    assert admin("group", "add-member", "ml", "bob", "--db", db).exit_code == 0
    groups = json.loads(admin("group", "list", "--json", "--db", db).stdout)
    assert groups == [{"name": "ml", "members": ["bob"]}]
    bob = admin("token", "create", "bob", "--name", "airflow", "--db", db)
    assert bob.exit_code == 0
    users = json.loads(admin("user", "list", "--json", "--db", db).stdout)
    assert [(u["name"], u["admin"], u["groups"], u["tokens"]) for u in users] == [
        ("alice", True, [], 1), ("bob", False, ["ml"], 2)]

    server = RegistryServer.start(db, tmp_path, users=())
    try:
        bad = tether_cli("login", server.url, "--token", "trt_wrong", home=tmp_path)
        assert bad.returncode == 1 and "refused this token" in bad.stderr
        assert not (tmp_path / "registry.json").exists()

        good = tether_cli("login", server.url, "--token", alice, home=tmp_path)
        assert good.returncode == 0 and "as alice" in good.stdout
        stored = tmp_path / "registry.json"
        assert stored.stat().st_mode & 0o777 == 0o600
        assert json.loads(stored.read_text()) == {"url": server.url, "token": alice}

        revoked = admin("token", "revoke", "bob", "--name", "airflow", "--db", db)
        assert revoked.exit_code == 0 and "Revoked 1 token" in revoked.stdout
        refused = tether_cli("login", server.url, "--token", bob.stdout.strip(), home=tmp_path)
        assert refused.returncode == 1 and "unknown or revoked" in refused.stderr

        assert tether_cli("logout", home=tmp_path).returncode == 0 and not stored.exists()
    finally:
        server.stop()
    removed = admin("user", "remove", "bob", "--db", db)
    assert removed.exit_code == 0
    users = json.loads(admin("user", "list", "--json", "--db", db).stdout)
    assert [u["name"] for u in users] == ["alice"]
