"""Quotas: how many clusters, CPUs and GPUs a group's members may run at once.

A launch registers its cluster's size before anything is provisioned (``claim``: the client's
``POST /v1/usage/clusters``); a teardown releases it. A user's clusters count against every group
they are in; a group without a quota (or a limit left unset) has no limit there. A claim that would
take any of the user's groups past a limit is refused with what each group uses and allows.

Entries expire (``ttl``, default a day) unless renewed: every bring-up of, or connection to, the
cluster renews it, so a process that crashed before its teardown frees its share after a while.
Claiming a cluster that is counted already (same user, same name) renews and resizes that entry.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tether.errors import ConfigError, NotFoundError
from tether.registry import admin
from tether.registry.models import ClusterUsage, Group, GroupMember, Quota, User, now

DEFAULT_TTL = 24 * 3600.0  # seconds a claim counts without being renewed
LIMITS = (("clusters", "max_clusters"), ("cpus", "max_cpus"), ("gpus", "max_gpus"))


class Exceeded(Exception):
    """A claim past a group's quota: the group, what its members use now (without this cluster),
    its limits, and the cluster's size."""

    def __init__(self, group: str, use: dict[str, float], limit: dict[str, float | None],
                 asked: dict[str, float]) -> None:
        super().__init__(group)
        self.group, self.use, self.limit, self.asked = group, use, limit, asked

    def message(self, cluster: str) -> str:
        over = [what for what, _ in LIMITS if self.limit[what] is not None
                and self.use[what] + self.asked[what] > self.limit[what]]
        return (f"launching {cluster} ({_show(self.asked)}) would take group {self.group} past its quota "
                f"of {', '.join(f'{_num(self.limit[w])} {w}' for w in over)}: it uses "
                f"{_show(self.use)} now (limits: {_show(self.limit)}). Tear down a cluster of the group "
                "(cluster.teardown()), or ask the registry's admin to raise the quota "
                f"(`tether registry quota set {self.group} ...`)")

    def body(self) -> dict[str, Any]:
        return {"group": self.group, "use": self.use, "limit": self.limit, "asked": self.asked}


def _num(value: float | None) -> str:
    return "no limit" if value is None else f"{value:g}"


def _show(values: dict[str, Any]) -> str:
    return ", ".join(f"{_num(values[what])} {what}" for what, _ in LIMITS)


# -- quotas (the admin's) --------------------------------------------------------------------------


def set_quota(session: Session, group_name: str, clusters: int | None = None, cpus: float | None = None,
              gpus: int | None = None) -> None:
    """Give ``group_name`` these limits (None: no limit there); replaces its earlier quota."""
    for what, value in (("clusters", clusters), ("cpus", cpus), ("gpus", gpus)):
        if value is not None and value < 0:
            raise ConfigError(f"--{what} is a limit (0 or more), not {value}")
    found = admin.group(session, group_name)
    quota = session.get(Quota, found.id) or Quota(group_id=found.id)
    quota.max_clusters, quota.max_cpus, quota.max_gpus = clusters, cpus, gpus
    session.add(quota)
    session.commit()


def remove_quota(session: Session, group_name: str) -> None:
    found = admin.group(session, group_name)
    quota = session.get(Quota, found.id)
    if quota is None:
        raise NotFoundError(f"group {group_name!r} has no quota", group=group_name)
    session.delete(quota)
    session.commit()


def list_quotas(session: Session) -> list[dict[str, Any]]:
    """Every group with a quota: its limits and what its members use now."""
    rows = []
    for quota, group in session.execute(select(Quota, Group).join(Group, Group.id == Quota.group_id)
                                        .order_by(Group.name)):
        rows.append({"group": group.name, "limit": _limits(quota), "use": group_use(session, group.id)})
    return rows


def _limits(quota: Quota) -> dict[str, float | None]:
    return {what: getattr(quota, column) for what, column in LIMITS}


# -- usage -----------------------------------------------------------------------------------------


def _live(query: Any) -> Any:
    return query.where(ClusterUsage.expires > now())


def group_use(session: Session, group_id: int, without: int | None = None) -> dict[str, float]:
    """What the members of a group run now (``without``: an entry not to count)."""
    query = _live(select(ClusterUsage).join(GroupMember, GroupMember.user_id == ClusterUsage.user_id)
                  .where(GroupMember.group_id == group_id))
    entries = [e for e in session.scalars(query) if e.id != without]
    return {"clusters": len(entries), "cpus": sum(e.cpus for e in entries),
            "gpus": sum(e.gpus for e in entries)}


def claim(session: Session, user: User, name: str, launcher: str, cpus: float, gpus: float,
          check: bool = True, ttl: float = DEFAULT_TTL) -> ClusterUsage:
    """Count cluster ``name`` of ``user`` (or renew and resize its entry). With ``check``, refuse
    (:class:`Exceeded`) when that takes one of the user's groups past its quota; without (a cluster
    that runs already), only record it."""
    session.execute(delete(ClusterUsage).where(ClusterUsage.expires <= now()))
    entry = session.scalar(select(ClusterUsage).where(ClusterUsage.user_id == user.id,
                                                      ClusterUsage.name == name))
    if check:
        asked = {"clusters": 1, "cpus": cpus, "gpus": gpus}
        quotas = select(Quota, Group).join(Group, Group.id == Quota.group_id).join(
            GroupMember, GroupMember.group_id == Group.id).where(GroupMember.user_id == user.id)
        for quota, group in session.execute(quotas.order_by(Group.name).with_for_update(of=Quota)):
            use, limit = group_use(session, group.id, without=entry.id if entry else None), _limits(quota)
            if any(limit[w] is not None and use[w] + asked[w] > limit[w] for w, _ in LIMITS):
                session.rollback()
                raise Exceeded(group.name, use, limit, asked)
    if entry is None:
        entry = ClusterUsage(user_id=user.id, name=name, created=now())
        session.add(entry)
    entry.launcher, entry.cpus, entry.gpus, entry.expires = launcher, cpus, gpus, now() + ttl
    session.commit()
    return entry


def release(session: Session, user: User, name: str) -> bool:
    """Stop counting cluster ``name`` of ``user``; whether it was counted."""
    done = session.execute(delete(ClusterUsage).where(ClusterUsage.user_id == user.id,
                                                      ClusterUsage.name == name))
    session.commit()
    return bool(done.rowcount)


def usage_of(session: Session, user: User | None = None) -> list[dict[str, Any]]:
    """The clusters counted now (``user``'s, or everyone's)."""
    query = _live(select(ClusterUsage).order_by(ClusterUsage.user_id, ClusterUsage.name))
    if user is not None:
        query = query.where(ClusterUsage.user_id == user.id)
    return [entry_out(e) for e in session.scalars(query)]


def entry_out(entry: ClusterUsage) -> dict[str, Any]:
    return {"user": entry.user.name, "name": entry.name, "launcher": entry.launcher, "cpus": entry.cpus,
            "gpus": entry.gpus, "created": entry.created, "expires": entry.expires}


def quotas_of(session: Session, user: User) -> list[dict[str, Any]]:
    """The quotas of ``user``'s groups, with what each group uses now."""
    query = (select(Quota, Group).join(Group, Group.id == Quota.group_id)
             .join(GroupMember, GroupMember.group_id == Group.id).where(GroupMember.user_id == user.id)
             .order_by(Group.name))
    return [{"group": group.name, "limit": _limits(quota), "use": group_use(session, group.id)}
            for quota, group in session.execute(query)]
