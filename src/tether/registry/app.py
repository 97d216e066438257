"""The registry's routes (FastAPI): ``create_app(db_url, key_dir)``.

Every route but ``/v1/health`` needs ``Authorization: Bearer <user token>`` (the v1 router's
dependency, so a new route cannot forget it); /docs and /openapi.json describe them. Errors are
JSON ``{"error": kind, "message": what to do next}``: 401 a missing or bad token, 403 names the
access needed, 404 names the path.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tether._version import __version__
from tether.errors import ConfigError, NotFoundError
from tether.protocol import grants
from tether.registry import access as acl
from tether.registry import admin, db, keys, quotas, schemas, vault
from tether.registry.models import Resource, Share, Token, User, Version, now

LAST_USED_EVERY = 60.0  # seconds: a token's last_used is written at most this often


class RegistryError(Exception):
    """An HTTP error with a kind and a message saying what to do next."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message}, status_code=status,
                        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)


# -- dependencies ------------------------------------------------------------------------------------


def _session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


DB = Annotated[Session, Depends(_session)]
_bearer = HTTPBearer(auto_error=False, description="a user token: `tether registry user add` or "
                                                   "`tether registry token create` prints one")


def _current_user(session: DB,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> User:
    if credentials is None:
        raise RegistryError(401, "unauthenticated", "this registry needs a token: send "
                            "'Authorization: Bearer <token>' (`tether login URL` stores one)")
    token = session.scalar(select(Token).where(Token.hash == admin.token_hash(credentials.credentials)))
    if token is None or token.revoked:
        raise RegistryError(401, "unauthenticated", "this token is unknown or revoked: ask the "
                            "registry's admin for a new one (`tether registry token create USER`)")
    if token.last_used is None or now() - token.last_used > LAST_USED_EVERY:
        token.last_used = now()
        session.commit()
    return token.user


Me = Annotated[User, Depends(_current_user)]


class _Caller:
    """The caller and their groups, loaded once per request."""

    def __init__(self, session: DB, user: Me) -> None:
        self.session, self.user = session, user
        self.groups = admin.groups_of(session, user)

    def access(self, resource: Resource) -> str | None:
        return acl.access_of(self.user, self.groups, resource)

    def resource(self, path: str, need: str) -> tuple[Resource, str]:
        """The resource at ``path`` if the caller has ``need`` access, else 404/403."""
        path = _path(path)
        found = self.session.scalar(select(Resource).where(Resource.path == path))
        if found is None:
            raise RegistryError(404, "not_found", f"nothing is saved as {path}")
        have = self.access(found)
        if have is None:
            raise RegistryError(403, "forbidden", f"{self.user.name} has no access to {path}; this "
                                f"needs {need} access: ask "
                                f"{found.owner.name} to share it (resource.share(['{self.user.name}']))")
        if not acl.allows(have, need):
            who = f"{self.user.name} has {have} access to {path}"
            if need == "owner":
                raise RegistryError(403, "forbidden", f"{who}; only its owner {found.owner.name} (or "
                                    "an admin) may do this")
            raise RegistryError(403, "forbidden", f"{who}; this needs {need} access: ask "
                                f"{found.owner.name} to share it with access_level='{need}'")
        return found, have


Caller = Annotated[_Caller, Depends()]


def _path(path: str) -> str:
    try:
        return acl.normalize_path(path)
    except ConfigError as exc:
        raise RegistryError(400, "bad_request", str(exc)) from None


def _resource_out(resource: Resource, version: Version, have: str) -> schemas.ResourceOut:
    return schemas.ResourceOut(path=resource.path, type=resource.type, version=version.number,
                               current_version=resource.current_version,
                               config=vault.public_config(version.config),
                               owner=resource.owner.name, access=have, updated=resource.updated)


def _add_version(session: Session, resource: Resource, config: dict[str, Any], by: str) -> int:
    resource.current_version += 1
    resource.updated = now()
    session.add(Version(resource_id=resource.id, number=resource.current_version, config=config,
                        created_by=by))
    session.commit()
    return resource.current_version


def _version(session: Session, resource: Resource, number: int | None) -> Version:
    number = resource.current_version if number is None else number
    found = session.scalar(select(Version).where(Version.resource_id == resource.id,
                                                 Version.number == number))
    if found is None:
        raise RegistryError(404, "not_found", f"{resource.path} has no version {number} (versions "
                            f"1..{resource.current_version}: GET .../versions)")
    return found


# -- routes --------------------------------------------------------------------------------------------

public = APIRouter(prefix="/v1", tags=["health"])
v1 = APIRouter(prefix="/v1", dependencies=[Depends(_current_user)],
               responses={401: {"model": schemas.ErrorBody}, 403: {"model": schemas.ErrorBody},
                          404: {"model": schemas.ErrorBody}})


@public.get("/health", response_model=schemas.Health)
def health() -> schemas.Health:
    """Whether the registry runs (no token needed): for load balancers and `tether login`."""
    return schemas.Health(ok=True, version=__version__)


@v1.get("/whoami", response_model=schemas.WhoAmI, tags=["users"])
def whoami(caller: Caller) -> schemas.WhoAmI:
    """The user the token belongs to, and their groups."""
    return schemas.WhoAmI(user=caller.user.name, admin=caller.user.is_admin, groups=caller.groups)


@v1.get("/resources", response_model=list[schemas.ResourceSummary], tags=["resources"])
def list_resources(caller: Caller, prefix: Annotated[str, Query(
        description="only paths starting with this, e.g. /alice/")] = "/") -> list[schemas.ResourceSummary]:
    """The resources the caller may read (their own, shared with them or their groups)."""
    query = select(Resource).where(Resource.path.startswith(prefix, autoescape=True)).order_by(Resource.path)
    rows = []
    for resource in caller.session.scalars(query):
        have = caller.access(resource)
        if have is not None:
            rows.append(schemas.ResourceSummary(path=resource.path, type=resource.type, owner=resource.owner.name,
                                                current_version=resource.current_version, access=have,
                                                updated=resource.updated))
    return rows


@v1.get("/shared-with-me", response_model=list[schemas.ResourceSummary], tags=["sharing"])
def shared_with_me(caller: Caller) -> list[schemas.ResourceSummary]:
    """Resources others shared with the caller, directly or through a group."""
    mine = [f"user:{caller.user.name}", *(f"group:{g}" for g in caller.groups)]
    query = (select(Resource).join(Share, Share.resource_id == Resource.id)
             .where(Share.principal.in_(mine), Resource.owner_id != caller.user.id)
             .distinct().order_by(Resource.path))
    rows = []
    for resource in caller.session.scalars(query):
        have = acl.access_of(caller.user, caller.groups, resource)
        if caller.user.is_admin:  # an admin's own "owner" right is not what was shared
            have = max((s.access for s in resource.shares if s.principal in mine), key=acl.RANK.get)
        rows.append(schemas.ResourceSummary(path=resource.path, type=resource.type, owner=resource.owner.name,
                                            current_version=resource.current_version, access=have,
                                            updated=resource.updated))
    return rows


@v1.get("/resources/{path:path}/versions", response_model=list[schemas.VersionOut], tags=["versions"])
def list_versions(path: str, caller: Caller) -> list[schemas.VersionOut]:
    """Every saved version of a resource, oldest first (read access)."""
    resource, _ = caller.resource(path, "read")
    found = caller.session.scalars(select(Version).where(Version.resource_id == resource.id)
                                   .order_by(Version.number))
    return [schemas.VersionOut(version=v.number, created=v.created, created_by=v.created_by,
                               current=v.number == resource.current_version) for v in found]


@v1.post("/resources/{path:path}/rollback", response_model=schemas.Saved, tags=["versions"])
def rollback(path: str, body: schemas.RollbackBody, caller: Caller) -> schemas.Saved:
    """Make version N's config current again, as a new version (write access); history is kept."""
    resource, _ = caller.resource(path, "write")
    old = _version(caller.session, resource, body.version)
    number = _add_version(caller.session, resource, dict(old.config), caller.user.name)
    return schemas.Saved(path=resource.path, version=number)


@v1.get("/resources/{path:path}/shares", response_model=list[schemas.ShareOut], tags=["sharing"])
def list_shares(path: str, caller: Caller) -> list[schemas.ShareOut]:
    """Who a resource is shared with (read access)."""
    resource, _ = caller.resource(path, "read")
    return [schemas.ShareOut(principal=s.principal, access=s.access)
            for s in sorted(resource.shares, key=lambda s: s.principal)]


@v1.put("/resources/{path:path}/shares", response_model=list[schemas.ShareOut], tags=["sharing"])
def share(path: str, body: schemas.SharesBody, caller: Caller) -> list[schemas.ShareOut]:
    """Share with users and groups at ``access`` (owner or admin); replaces their earlier level."""
    resource, _ = caller.resource(path, "owner")
    current = {s.principal: s for s in resource.shares}
    for text in body.principals:
        name = _principal(caller.session, text)
        if name in current:
            current[name].access = body.access
        else:
            resource.shares.append(Share(principal=name, access=body.access))
    caller.session.commit()
    return list_shares(path, caller)


@v1.delete("/resources/{path:path}/shares", response_model=list[schemas.ShareOut], tags=["sharing"])
def unshare(path: str, body: schemas.UnshareBody, caller: Caller) -> list[schemas.ShareOut]:
    """Stop sharing with these users and groups (owner or admin). Grants they hold for a cluster
    end when they expire (a few minutes)."""
    resource, _ = caller.resource(path, "owner")
    drop = {_principal_text(text) for text in body.principals}
    resource.shares[:] = [s for s in resource.shares if s.principal not in drop]
    caller.session.commit()
    return list_shares(path, caller)


@v1.put("/resources/{path:path}", response_model=schemas.Saved, tags=["resources"])
def save(path: str, body: schemas.SaveBody, caller: Caller) -> schemas.Saved:
    """Save a config as the resource's new version. Creating a name under /owner/ takes the owner
    (or an admin); a new version of an existing one takes write access."""
    config = vault.public_config(body.config)  # sealed values come in through /v1/secrets only
    return _save(caller, path, config)


def _save(caller: _Caller, path: str, config: dict[str, Any]) -> schemas.Saved:
    path = _path(path)
    if path.rsplit("/", 1)[1] in acl.RESERVED:
        raise RegistryError(400, "bad_request", f"{path}: names may not end in "
                            f"{'/'.join(sorted(acl.RESERVED))} (the API's own)")
    session = caller.session
    resource = session.scalar(select(Resource).where(Resource.path == path).with_for_update())
    if resource is None:
        owner = acl.owner_name(path)
        if owner != caller.user.name and not caller.user.is_admin:
            raise RegistryError(403, "forbidden", f"only {owner} (or an admin) may create names under "
                                f"/{owner}/; save yours as @/{path.split('/', 2)[2]} (/{caller.user.name}/...)")
        owner_user = session.scalar(select(User).where(User.name == owner))
        if owner_user is None:
            raise RegistryError(404, "not_found", f"no user {owner!r} to own {path}")
        resource = Resource(owner_id=owner_user.id, path=path, type=str(config.get("type") or "resource"))
        session.add(resource)
        session.flush()
    else:
        caller.resource(path, "write")
        resource.type = str(config.get("type") or resource.type)
    return schemas.Saved(path=path, version=_add_version(session, resource, config, caller.user.name))


@v1.get("/resources/{path:path}", response_model=schemas.ResourceOut, tags=["resources"])
def load(path: str, caller: Caller, version: Annotated[int | None, Query(
        ge=1, description="a saved version (default: the current one)")] = None) -> schemas.ResourceOut:
    """A resource's config (read access): the current version, or ``?version=N``."""
    resource, have = caller.resource(path, "read")
    return _resource_out(resource, _version(caller.session, resource, version), have)


@v1.delete("/resources/{path:path}", status_code=204, tags=["resources"])
def delete(path: str, caller: Caller) -> None:
    """Delete a resource with its versions and shares (write access)."""
    resource, _ = caller.resource(path, "write")
    caller.session.delete(resource)
    caller.session.commit()


@v1.put("/secrets/{path:path}", response_model=schemas.Saved, tags=["secrets"])
def save_secret(path: str, body: schemas.SecretBody, caller: Caller, request: Request) -> schemas.Saved:
    """Save a secret's config and its values as a new version (like PUT /v1/resources): the values
    are encrypted with the registry's key before they are stored, and never shown by other routes."""
    config = {**vault.public_config(body.config), "type": "secret",
              vault.FIELD: request.app.state.vault.seal(body.values)}
    return _save(caller, path, config)


@v1.get("/secrets/{path:path}", response_model=schemas.SecretValues, tags=["secrets"])
def secret_values(path: str, caller: Caller, request: Request, version: Annotated[int | None, Query(
        ge=1, description="a saved version (default: the current one)")] = None) -> schemas.SecretValues:
    """A secret's values, decrypted (read access: the owner, and those it is shared with)."""
    resource, _ = caller.resource(path, "read")
    if resource.type != "secret":
        raise RegistryError(400, "bad_request", f"{resource.path} is a {resource.type}, not a secret")
    found = _version(caller.session, resource, version)
    try:
        values = request.app.state.vault.open(found.config)
    except ValueError as exc:
        raise RegistryError(409, "conflict", f"{resource.path}: {exc}") from None
    if values is None:
        raise RegistryError(404, "not_found", f"{resource.path} version {found.number} was saved "
                            "without values: save them with secret.save()")
    return schemas.SecretValues(path=resource.path, version=found.number, values=values)


@v1.post("/grants", response_model=schemas.GrantOut, tags=["grants"])
def grant(body: schemas.GrantBody, caller: Caller, request: Request) -> schemas.GrantOut:
    """A short-lived grant to use a cluster at the caller's access level (read: call its
    services; write: also deploy and tear down), verified offline by the cluster's daemon."""
    resource, have = caller.resource(body.cluster, "read")
    if resource.type != "cluster":
        raise RegistryError(400, "bad_request", f"{resource.path} is a {resource.type}, not a cluster")
    level = "read" if have == "read" else "write"
    issued = time.time()
    token = grants.sign(request.app.state.grant_key, user=caller.user.name, cluster=resource.path,
                        access=level, issuer=_issuer(request), now=issued)
    return schemas.GrantOut(grant=token, expires=issued + grants.DEFAULT_TTL, access=level,
                            user=caller.user.name, cluster=resource.path)


@v1.get("/grant-key", response_model=schemas.GrantKey, tags=["grants"])
def grant_key(request: Request) -> schemas.GrantKey:
    """The public key daemons verify this registry's grants with."""
    return schemas.GrantKey(public_key=grants.public_key(request.app.state.grant_key), issuer=_issuer(request))


@v1.post("/usage/clusters", response_model=schemas.UsageOut, tags=["quotas"],
         responses={409: {"model": schemas.QuotaExceededBody}})
def claim_usage(body: schemas.UsageBody, caller: Caller, request: Request) -> Any:
    """Count a cluster the caller launches against their groups' quotas, before it is provisioned
    (or renew its entry): 409 ``quota_exceeded`` with the group's use and limits when it would
    take one of them past its quota. Entries not renewed expire (docs/registry.md#quotas)."""
    try:
        entry = quotas.claim(caller.session, caller.user, body.name, body.launcher, body.cpus, body.gpus,
                             check=body.check, ttl=request.app.state.usage_ttl)
    except quotas.Exceeded as exc:
        return JSONResponse({"error": "quota_exceeded", "message": exc.message(body.name), **exc.body()},
                            status_code=409)
    return quotas.entry_out(entry)


@v1.delete("/usage/clusters/{name:path}", status_code=204, tags=["quotas"])
def release_usage(name: str, caller: Caller) -> None:
    """Stop counting one of the caller's clusters (its teardown); nothing to do when it is not counted."""
    quotas.release(caller.session, caller.user, name)


@v1.get("/usage", response_model=schemas.UsageReport, tags=["quotas"])
def usage(caller: Caller) -> dict[str, Any]:
    """The caller's clusters counted now, and their groups' quotas with each group's use."""
    return {"clusters": quotas.usage_of(caller.session, caller.user),
            "quotas": quotas.quotas_of(caller.session, caller.user)}


def _issuer(request: Request) -> str:
    return request.app.state.public_url or str(request.base_url).rstrip("/")


def _principal_text(text: str) -> str:
    try:
        return acl.principal(text)
    except ConfigError as exc:
        raise RegistryError(400, "bad_request", str(exc)) from None


def _principal(session: Session, text: str) -> str:
    """``text`` as a principal whose user or group exists (404 naming it otherwise)."""
    name = _principal_text(text)
    kind, _, bare = name.partition(":")
    try:
        (admin.user if kind == "user" else admin.group)(session, bare)
    except NotFoundError as exc:
        raise RegistryError(404, "not_found", str(exc)) from None
    return name


# -- the app ---------------------------------------------------------------------------------------------


def create_app(db_url: str | None = None, key_dir: str | Path | None = None,
               public_url: str | None = None, engine: Any = None,
               usage_ttl: float = quotas.DEFAULT_TTL) -> FastAPI:
    """The registry app on the database at ``db_url`` (migrated by the caller: ``db.open_db``)
    with its keys in ``key_dir`` (default: beside a SQLite file, else ``$TETHER_HOME/registry``).
    ``public_url`` is the issuer named in grants (default: the URL a request came to);
    ``usage_ttl``: seconds a cluster counts against quotas unless renewed (``registry/quotas.py``)."""
    url = db_url or db.default_url()
    app = FastAPI(title="tether registry", version=__version__,
                  description="Shared names, versions and access levels for a team's tether "
                              "resources (docs/registry.md). Every route but /v1/health needs "
                              "`Authorization: Bearer <token>`.")
    app.state.engine = engine if engine is not None else db.engine(url)
    key_dir = Path(key_dir) if key_dir else db.default_key_dir(url)
    app.state.grant_key = keys.grant_key(key_dir)
    app.state.vault = vault.Vault(keys.secrets_key(key_dir))
    app.state.public_url = public_url.rstrip("/") if public_url else None
    app.state.usage_ttl = usage_ttl

    @app.exception_handler(RegistryError)
    def _registry_error(_request: Request, exc: RegistryError) -> JSONResponse:
        return _error(exc.status, exc.kind, exc.message)

    @app.exception_handler(NotFoundError)
    def _not_found(_request: Request, exc: NotFoundError) -> JSONResponse:
        return _error(404, "not_found", str(exc))

    @app.exception_handler(IntegrityError)
    def _conflict(_request: Request, _exc: IntegrityError) -> JSONResponse:
        return _error(409, "conflict", "another request changed this at the same moment: try again")

    @app.exception_handler(RequestValidationError)
    def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # where and what, never the input (a secret's values may be in it)
        where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return _error(422, "bad_request", f"the request does not fit the API (/docs): {where}")

    @app.exception_handler(ConfigError)
    def _bad_request(_request: Request, exc: ConfigError) -> JSONResponse:
        return _error(400, "bad_request", str(exc))

    app.include_router(public)
    app.include_router(v1)
    return app
