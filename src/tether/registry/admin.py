"""Users, groups and tokens: what ``tether registry user|group|token`` does to the database.

Tokens are random, shown once, and stored as their SHA-256 (:func:`token_hash`), so a copy of the
database lets nobody in. Names are short and plain (``alice``, ``ml-team``): they become the first
segment of resource paths and the ``user:``/``group:`` principals of shares.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tether.errors import ConfigError, NotFoundError
from tether.registry.models import Group, GroupMember, Resource, Share, Token, User

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
TOKEN_PREFIX = "trt_"  # "tether registry token": tells it apart from a daemon's token and a grant


def check_name(name: str, what: str = "user") -> str:
    if not NAME_RE.match(name or ""):
        raise ConfigError(f"bad {what} name {name!r}: up to 64 letters, digits, '_', '.', '-', "
                          "starting with a letter or digit")
    return name


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def user(session: Session, name: str) -> User:
    found = session.scalar(select(User).where(User.name == name))
    if found is None:
        raise NotFoundError(f"no user named {name!r} (see `tether registry user list`)", user=name)
    return found


def group(session: Session, name: str) -> Group:
    found = session.scalar(select(Group).where(Group.name == name))
    if found is None:
        raise NotFoundError(f"no group named {name!r} (see `tether registry group list`)", group=name)
    return found


def create_token(session: Session, owner: User, name: str = "default") -> str:
    """A new token for ``owner``; only its hash is stored, so this is the one time it is seen."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(Token(user_id=owner.id, hash=token_hash(token), name=check_name(name, "token")))
    return token


def add_user(session: Session, name: str, admin: bool = False) -> str:
    """Add user ``name``; returns their first token."""
    check_name(name)
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise ConfigError(f"user {name!r} exists already; `tether registry token create {name}` "
                          "makes them a new token")
    made = User(name=name, is_admin=admin)
    session.add(made)
    session.flush()
    token = create_token(session, made)
    session.commit()
    return token


def list_users(session: Session) -> list[dict[str, Any]]:
    rows = []
    for found in session.scalars(select(User).order_by(User.name)):
        groups = session.scalars(select(Group.name).join(GroupMember, GroupMember.group_id == Group.id)
                                 .where(GroupMember.user_id == found.id).order_by(Group.name)).all()
        owned = session.scalar(select(func.count()).select_from(Resource)
                               .where(Resource.owner_id == found.id))
        tokens = session.scalar(select(func.count()).select_from(Token)
                                .where(Token.user_id == found.id, Token.revoked.is_(False)))
        rows.append({"name": found.name, "admin": found.is_admin, "groups": list(groups),
                     "resources": owned, "tokens": tokens, "created": found.created})
    return rows


def remove_user(session: Session, name: str, purge: bool = False) -> int:
    """Remove user ``name`` (tokens, memberships, shares to them). Their resources go too only
    with ``purge``; returns how many were removed."""
    found = user(session, name)
    owned = session.scalars(select(Resource).where(Resource.owner_id == found.id)).all()
    if owned and not purge:
        raise ConfigError(f"{name} owns {len(owned)} resources ({', '.join(r.path for r in owned[:5])}"
                          f"{'...' if len(owned) > 5 else ''}); pass --purge to remove them with the user")
    for resource in owned:
        session.delete(resource)
    session.execute(delete(Share).where(Share.principal == f"user:{name}"))
    session.execute(delete(Token).where(Token.user_id == found.id))
    session.execute(delete(GroupMember).where(GroupMember.user_id == found.id))
    session.delete(found)
    session.commit()
    return len(owned)


def revoke_tokens(session: Session, name: str, token_name: str | None = None) -> int:
    """Revoke ``name``'s tokens (all, or the one called ``token_name``); returns how many."""
    found = user(session, name)
    query = select(Token).where(Token.user_id == found.id, Token.revoked.is_(False))
    if token_name:
        query = query.where(Token.name == token_name)
    tokens = session.scalars(query).all()
    if token_name and not tokens:
        raise NotFoundError(f"{name} has no token named {token_name!r}", token=token_name)
    for token in tokens:
        token.revoked = True
    session.commit()
    return len(tokens)


def add_group(session: Session, name: str) -> None:
    check_name(name, "group")
    if session.scalar(select(Group).where(Group.name == name)) is not None:
        raise ConfigError(f"group {name!r} exists already")
    session.add(Group(name=name))
    session.commit()


def remove_group(session: Session, name: str) -> None:
    found = group(session, name)
    session.execute(delete(Share).where(Share.principal == f"group:{name}"))
    session.execute(delete(GroupMember).where(GroupMember.group_id == found.id))
    session.delete(found)
    session.commit()


def add_member(session: Session, group_name: str, user_name: str) -> None:
    found, member = group(session, group_name), user(session, user_name)
    if session.get(GroupMember, (found.id, member.id)) is None:
        session.add(GroupMember(group_id=found.id, user_id=member.id))
    session.commit()


def remove_member(session: Session, group_name: str, user_name: str) -> None:
    found, member = group(session, group_name), user(session, user_name)
    membership = session.get(GroupMember, (found.id, member.id))
    if membership is None:
        raise NotFoundError(f"{user_name} is not a member of {group_name}")
    session.delete(membership)
    session.commit()


def groups_of(session: Session, member: User) -> list[str]:
    return list(session.scalars(select(Group.name).join(GroupMember, GroupMember.group_id == Group.id)
                                .where(GroupMember.user_id == member.id).order_by(Group.name)))


def list_groups(session: Session) -> list[dict[str, Any]]:
    rows = []
    for found in session.scalars(select(Group).order_by(Group.name)):
        members = session.scalars(select(User.name).join(GroupMember, GroupMember.user_id == User.id)
                                  .where(GroupMember.group_id == found.id).order_by(User.name)).all()
        rows.append({"name": found.name, "members": list(members)})
    return rows
