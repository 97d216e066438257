"""Other names of objects: ``fn.save(name="new")`` on a deployed function or instance.

An alias is a second name of one object, not a rename: a call, ``cluster.get()`` or a describe by
the alias reaches the object, and every handle on its first name (in other processes, in running
pipelines) keeps working. Runhouse renamed the object instead, which broke those handles.

* An alias names an object (an alias of an alias names that alias's object).
* A deploy or put under a name that is an alias takes the name over: the alias goes.
* Deleting an alias deletes only the alias; deleting the object deletes its aliases.
* Aliases are kept in the manifest (``aliases.json``), so they come back with their objects after
  a daemon restart.
"""

from __future__ import annotations

from collections.abc import Iterable

from tether.daemon.manifest import Manifest


class NameTaken(ValueError):
    """The alias is the name of another object (the caller gets a 409)."""


class Aliases:
    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.names: dict[str, str] = {}  # alias -> the object's own name

    def load(self, found: dict[str, str], known: Iterable[str]) -> None:
        """Take the manifest's aliases whose object came back (or is listed as lost)."""
        known = set(known)
        self.names = {alias: target for alias, target in found.items() if target in known}

    def of(self) -> dict[str, list[str]]:
        """object name -> its aliases."""
        found: dict[str, list[str]] = {}
        for alias, target in sorted(self.names.items()):
            found.setdefault(target, []).append(alias)
        return found

    async def set(self, alias: str, target: str, objects: Iterable[str]) -> dict[str, str]:
        target = self.names.get(target, target)
        if alias in objects and alias != target:
            raise NameTaken(f"{alias!r} is the name of another object on this cluster: delete it first "
                            f"(cluster.delete({alias!r})) or choose another name")
        if alias != target and self.names.get(alias) != target:
            self.names[alias] = target
            await self.manifest.save_aliases(self.names)
        return {"alias": alias, "name": target}

    async def drop(self, names: Iterable[str], targets: Iterable[str] = ()) -> None:
        """Forget these aliases, and every alias of these objects."""
        names, targets = set(names), set(targets)
        gone = [a for a, t in self.names.items() if a in names or t in targets]
        for alias in gone:
            del self.names[alias]
        if gone:
            await self.manifest.save_aliases(self.names)
