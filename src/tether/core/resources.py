"""The Resource base: a name, a compact JSON ``config()``, ``from_config()``, ``save()``.

Every resource (cluster, function, module instance, env) round-trips through its config, so a name
saved in one process is loaded in another (an orchestrator's next step) with ``tether.load(name)``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tether.core.errors import ConfigError


class Resource:
    RESOURCE_TYPE: ClassVar[str] = "resource"
    _types: ClassVar[dict[str, type[Resource]]] = {}

    name: str | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Resource._types[cls.RESOURCE_TYPE] = cls

    def config(self) -> dict[str, Any]:
        """A JSON-able dict that ``from_config`` turns back into an equal resource."""
        return {"type": self.RESOURCE_TYPE, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Resource:
        raise NotImplementedError

    def save(self, name: str | None = None) -> Resource:
        """Save the config under ``name`` (default: the resource's name) in the local registry."""
        from tether.core.registry import local

        if name:
            self.name = name
        local.save(self.config())
        return self

    def share(self, *users: str, access_level: str = "read") -> None:
        raise ConfigError(
            "sharing needs the team registry server (`tether registry serve`), which this version "
            "does not include yet; save() keeps resources in the local registry"
        )

    def delete_configs(self) -> None:
        """Remove the saved config of this resource from the local registry."""
        from tether.core.registry import local

        if self.name:
            local.delete(self.name)


def load(name: str) -> Resource:
    """Load any saved resource by name (a cluster, a function, a module instance, an env)."""
    from tether.core.registry import local

    return from_config(local.load(name))


def from_config(config: dict[str, Any]) -> Resource:
    _import_resource_types()
    kind = config.get("type")
    try:
        cls = Resource._types[kind]
    except KeyError:
        raise ConfigError(f"unknown resource type {kind!r} in config {config.get('name')!r}") from None
    return cls.from_config(config)


def exists(name: str) -> bool:
    """Whether a resource is saved under ``name`` in the local registry."""
    from tether.core.registry import local

    return local.exists(name)


def _import_resource_types() -> None:
    import tether.core.cluster  # noqa: F401
    import tether.core.function  # noqa: F401
    import tether.core.images  # noqa: F401
    import tether.core.module  # noqa: F401
    import tether.core.services  # noqa: F401 - services deployed by pipeline steps
    import tether.core.stubs  # noqa: F401 - saved remote instances
