"""The registry's tables (SQLAlchemy 2 declarative). Migration 0001 makes exactly these.

Times are Unix seconds (floats): one type on SQLite and PostgreSQL, no time zones to misread.
A resource's configs are its versions (``versions``); ``resources.current_version`` is the one a
load without ``version=`` reads. Secrets (next: encrypted configs) and quotas use the same tables.
"""

from __future__ import annotations

import time

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def now() -> float:
    return time.time()


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[float] = mapped_column(Float, default=now)


class Token(Base):
    """A user's bearer token, stored as its SHA-256 (the token itself is shown once)."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64), default="default")
    created: Mapped[float] = mapped_column(Float, default=now)
    last_used: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship()


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[float] = mapped_column(Float, default=now)


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class Resource(Base):
    """A name (``/alice/embedder``: the first segment is the owner) and its current version."""

    __tablename__ = "resources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(512), unique=True)
    type: Mapped[str] = mapped_column(String(32))
    created: Mapped[float] = mapped_column(Float, default=now)
    updated: Mapped[float] = mapped_column(Float, default=now)
    current_version: Mapped[int] = mapped_column(Integer, default=0)

    owner: Mapped[User] = relationship()
    shares: Mapped[list[Share]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class Version(Base):
    """One saved config of a resource; numbers start at 1 and only grow (a rollback adds one)."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("resource_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict] = mapped_column(JSON)
    created: Mapped[float] = mapped_column(Float, default=now)
    created_by: Mapped[str] = mapped_column(String(64))


class Share(Base):
    """``principal`` (``user:bob`` or ``group:ml``) may read or write the resource."""

    __tablename__ = "shares"

    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"), primary_key=True)
    principal: Mapped[str] = mapped_column(String(80), primary_key=True)
    access: Mapped[str] = mapped_column(String(8))


class Quota(Base):
    """A group's limits (None: no limit) on what its members run at once, checked when a launch
    registers its cluster (``registry/quotas.py``)."""

    __tablename__ = "quotas"

    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    max_clusters: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_cpus: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_gpus: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ClusterUsage(Base):
    """A cluster a user launched and has not torn down: its size, counted against the quotas of
    every group the user is in. ``expires``: when a cluster nobody refreshed stops counting (a
    process that crashed before its teardown), renewed each time a process brings it up or
    connects to it (migration 0002)."""

    __tablename__ = "cluster_usage"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(512))
    launcher: Mapped[str] = mapped_column(String(32))
    cpus: Mapped[float] = mapped_column(Float, default=0.0)
    gpus: Mapped[float] = mapped_column(Float, default=0.0)
    created: Mapped[float] = mapped_column(Float, default=now)
    expires: Mapped[float] = mapped_column(Float)

    user: Mapped[User] = relationship()
