"""What a grant (``protocol/grants.py``) may do on this daemon: every route's access, in one table.

A request with the daemon's own bearer token is the cluster's owner and may do everything; it
never reaches this module (``DaemonApp`` checks the token first). A request with a grant needs
the access its route is listed with in :data:`ROUTES`:

* ``read``: call services, and read what the daemon shows (status, keys, objects, call records
  and output, metrics, usage, events, health);
* ``own``: a call's result and its cancel: a read grant for its user's own calls only (the route
  checks, :func:`check_own`), a write grant for any call;
* ``write``: change what runs (deploy, delete, run commands, limits, image updates, nodes, forget);
* ``owner``: the owner's token only (token rotation, the registry settings, the dashboard).

A route not in the table needs ``owner``, and ``tests/unit/daemon/test_access_routes.py`` fails
for any route of the app that is not listed, so a new route cannot slip through unclassified.
When several entries match a request (``/{name}/{method}`` matches ``/_tether/forget`` too),
the strictest one applies.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from tether.daemon.history import parse_caller
from tether.protocol import wire

if TYPE_CHECKING:
    from tether.protocol.grants import Grant

READ, OWN, WRITE, OWNER = "read", "own", "write", "owner"
_RANK = {READ: 0, OWN: 1, WRITE: 2, OWNER: 3}
DASHBOARD = "/_tether/dashboard"

#: (method, route path as the app declares it) -> the access a grant needs
ROUTES: dict[tuple[str, str], str] = {
    # calls (the raw call route, and the FastAPI routes that list it in the schema)
    ("GET", "/{name}"): READ,
    ("POST", "/{name}"): READ,
    ("GET", "/{name}/{method}"): READ,
    ("POST", "/{name}/{method}"): READ,
    # reads
    ("GET", "/health"): READ,
    ("GET", "/_tether/status"): READ,
    ("GET", "/_tether/metrics"): READ,
    ("GET", "/_tether/keys"): READ,
    ("GET", "/_tether/objects/{name}"): READ,
    ("GET", "/_tether/image"): READ,
    ("GET", "/_tether/nodes"): READ,
    ("GET", "/_tether/calls"): READ,
    ("GET", "/_tether/calls/{call_id}/record"): READ,
    ("GET", "/_tether/calls/{call_id}/output"): READ,
    ("GET", "/_tether/usage"): READ,
    ("GET", "/_tether/events"): READ,
    ("GET", "/_tether/registry"): READ,
    ("GET", "/_tether/docs"): READ,
    ("GET", "/_tether/openapi.json"): READ,
    ("GET", "/docs/oauth2-redirect"): READ,
    # one's own calls
    ("GET", "/_tether/calls/{call_id}"): OWN,
    ("POST", "/_tether/calls/{call_id}/cancel"): OWN,
    # writes
    ("POST", "/_tether/deploy"): WRITE,
    ("DELETE", "/_tether/objects/{name}"): WRITE,
    ("PUT", "/_tether/aliases/{alias}"): WRITE,
    ("POST", "/_tether/run"): WRITE,
    ("POST", "/_tether/forget"): WRITE,
    ("POST", "/_tether/image"): WRITE,
    ("POST", "/_tether/envs/{env}/limits"): WRITE,
    ("PUT", "/_tether/secrets/{env}"): WRITE,
    ("POST", "/_tether/nodes"): WRITE,
    ("POST", "/_tether/events"): WRITE,
    # the owner's alone
    ("POST", "/_tether/token"): OWNER,
    ("PUT", "/_tether/registry"): OWNER,
    ("PUT", "/_tether/records"): OWNER,  # pausing the records: the grants' calls too
    ("GET", DASHBOARD): OWNER,
    ("GET", f"{DASHBOARD}/"): OWNER,
    ("GET", f"{DASHBOARD}/static/{{name}}"): OWNER,
    ("GET", f"{DASHBOARD}/login"): OWNER,
    ("POST", f"{DASHBOARD}/login"): OWNER,
    ("POST", f"{DASHBOARD}/logout"): OWNER,
}


def _pattern(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", path)
    return re.compile("".join(("[^/]+" if p.startswith("{") else re.escape(p)) for p in parts if p) + r"\Z")


_EXACT: dict[tuple[str, str], str] = {key: level for key, level in ROUTES.items() if "{" not in key[1]}
_TEMPLATES: dict[str, list[tuple[re.Pattern[str], str]]] = {}
for (_method, _path), _level in ROUTES.items():
    if "{" in _path:
        _TEMPLATES.setdefault(_method, []).append((_pattern(_path), _level))


@functools.lru_cache(maxsize=1024)  # a user's calls repeat their paths: ~0.1 us instead of ~2
def needed(method: str, path: str) -> str:
    """The access a grant needs for ``method path`` (``owner`` when no entry matches)."""
    if method == "HEAD":
        method = "GET"
    found = [level for pattern, level in _TEMPLATES.get(method, ()) if pattern.match(path)]
    exact = _EXACT.get((method, path))
    if exact is not None:
        found.append(exact)
    return max(found, key=_RANK.__getitem__) if found else OWNER


def allows(access: str, need: str) -> bool:
    """Whether a grant with ``access`` (read or write) passes a route that needs ``need``."""
    if need == OWNER:
        return False
    return access == WRITE or need in (READ, OWN)


def refusal(grant: Grant, need: str, method: str, path: str) -> str:
    """The 403's message: who, what they have, what the request needs, and what to do."""
    what = f"{method} {path[:200]}"
    if need == OWNER:
        return (f"user {grant.user!r} has {grant.access} access to cluster {grant.cluster!r}, and {what} is "
                "for the cluster's owner only (its own bearer token)")
    return (f"user {grant.user!r} has {grant.access} access to cluster {grant.cluster!r}, and {what} needs "
            f"{need} access: ask the cluster's owner to share it with access_level='{need}'")


def check_own(scope: dict[str, Any], caller: bytes | None, call_id: str) -> str | None:
    """For a route that needs ``own``: None if the request may act on the call whose record has
    ``caller``, else the 403's message (a read grant acts on its own user's calls only)."""
    grant: Grant | None = scope.get("tether.grant")
    if grant is None or grant.can_write:
        return None
    if parse_caller(caller).get("user") == grant.user:
        return None
    return (f"call {call_id} is not one of user {grant.user!r}'s, who has read access to cluster "
            f"{grant.cluster!r}: a read grant gets and cancels its own calls only (write access: any call)")


_CALLER = wire.CALLER_HEADER.encode()


def as_user(headers: list[tuple[bytes, bytes]], user: str) -> list[tuple[bytes, bytes]]:
    """``headers`` with the caller header naming the grant's ``user`` (keeping the client's host
    and pid): a call's record names the user the registry vouched for, not the one it claims."""
    kept, where = [], b"?:"
    for key, value in headers:
        if key == _CALLER:
            if b"@" in value:
                where = value.partition(b"@")[2]
        else:
            kept.append((key, value))
    kept.append((_CALLER, _name(user) + b"@" + where))
    return kept


@functools.lru_cache(maxsize=1024)
def _name(user: str) -> bytes:
    return "".join(c for c in user if " " < c <= "~" and c not in "@:")[:100].encode() or b"?"
