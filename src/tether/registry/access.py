"""Who may do what to a resource: the one place the registry decides it.

A path is ``/owner/name`` (more segments make folders: ``/alice/team/embedder``); its owner is
the first segment. The owner and admins have every right (``"owner"``); a share to the user or
to one of their groups gives ``"read"`` or ``"write"`` (the higher of them wins). Only the owner
(or an admin) creates names under ``/owner/`` and changes who a resource is shared with.
"""

from __future__ import annotations

import re

from tether.errors import ConfigError
from tether.registry.admin import NAME_RE
from tether.registry.models import Resource, User

LEVELS = ("read", "write")
RANK = {None: 0, "read": 1, "write": 2, "owner": 3}
#: last path segments the routes use for themselves (``/v1/resources/{path}/versions``)
RESERVED = frozenset({"versions", "shares", "rollback"})
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def normalize_path(path: str) -> str:
    """``alice/x`` or ``/alice/x`` -> ``/alice/x``; ConfigError when it is not a resource path."""
    parts = path.strip("/").split("/")
    if (len(parts) < 2 or len(path) > 512 or not NAME_RE.match(parts[0])
            or not all(_SEGMENT.match(p) for p in parts[1:])):
        raise ConfigError(f"bad resource path {path!r}: use /owner/name (letters, digits, '_', '.', "
                          "'-'; more '/' for folders)")
    return "/" + "/".join(parts)


def owner_name(path: str) -> str:
    return path.split("/")[1]


def principal(text: str) -> str:
    """``bob`` -> ``user:bob``; ``group:ml`` and ``user:bob`` stay."""
    kind, sep, name = text.partition(":")
    if not sep:
        kind, name = "user", text
    if kind not in ("user", "group") or not NAME_RE.match(name):
        raise ConfigError(f"bad principal {text!r}: a user name ('bob'), 'user:bob' or 'group:ml'")
    return f"{kind}:{name}"


def access_of(user: User, groups: list[str], resource: Resource) -> str | None:
    """``"owner"``, ``"write"``, ``"read"`` or None: what ``user`` may do to ``resource``."""
    if user.is_admin or resource.owner_id == user.id:
        return "owner"
    mine = {f"user:{user.name}", *(f"group:{g}" for g in groups)}
    best = None
    for share in resource.shares:
        if share.principal in mine and RANK[share.access] > RANK[best]:
            best = share.access
    return best


def allows(have: str | None, need: str) -> bool:
    return RANK[have] >= RANK[need]
