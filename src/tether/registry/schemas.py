"""The registry's HTTP bodies (pydantic): what /docs shows and what the client sends and reads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Access = Literal["read", "write"]


class ErrorBody(BaseModel):
    error: str = Field(description="the kind: unauthenticated, forbidden, not_found, bad_request, conflict")
    message: str = Field(description="what went wrong and what to do next")


class Health(BaseModel):
    ok: bool
    version: str


class WhoAmI(BaseModel):
    user: str
    admin: bool
    groups: list[str]


class SaveBody(BaseModel):
    config: dict[str, Any] = Field(description="the resource's config (``resource.config()``)")


class SecretBody(BaseModel):
    config: dict[str, Any] = Field(description="the secret's config (``secret.config()``: no values)")
    values: dict[str, Any] = Field(description="the values, encrypted at rest with the registry's key")


class SecretValues(BaseModel):
    path: str
    version: int
    values: dict[str, Any]


class Saved(BaseModel):
    path: str
    version: int


class ResourceOut(BaseModel):
    path: str
    type: str
    version: int = Field(description="the version returned (the current one unless ?version= asked)")
    current_version: int
    config: dict[str, Any]
    owner: str
    access: Literal["owner", "write", "read"] = Field(description="what the caller may do to it")
    updated: float


class ResourceSummary(BaseModel):
    path: str
    type: str
    owner: str
    current_version: int
    access: Literal["owner", "write", "read"]
    updated: float


class VersionOut(BaseModel):
    version: int
    created: float
    created_by: str
    current: bool


class RollbackBody(BaseModel):
    version: int = Field(ge=1, description="the version whose config becomes a new, current version")


class SharesBody(BaseModel):
    principals: list[str] = Field(min_length=1, description="user names, 'user:bob' or 'group:ml'")
    access: Access = "read"


class UnshareBody(BaseModel):
    principals: list[str] = Field(min_length=1)


class ShareOut(BaseModel):
    principal: str
    access: Access


class GrantBody(BaseModel):
    cluster: str = Field(description="the cluster's registry path, e.g. /alice/gpu")


class GrantOut(BaseModel):
    grant: str = Field(description="tg1.<claims>.<signature>: the bearer token for that cluster's daemon")
    expires: float
    access: Access
    user: str
    cluster: str


class GrantKey(BaseModel):
    public_key: str = Field(description="base64url raw Ed25519 public key: what daemons verify grants with")
    issuer: str


class Amounts(BaseModel):
    clusters: float
    cpus: float
    gpus: float


class Limits(BaseModel):
    clusters: float | None = Field(description="None: no limit")
    cpus: float | None
    gpus: float | None


class UsageBody(BaseModel):
    name: str = Field(min_length=1, max_length=512, description="the cluster's name (one entry per user and name)")
    launcher: str = Field(default="", max_length=32)
    cpus: float = Field(default=0, ge=0, description="the cluster's CPUs, all nodes (0: not known)")
    gpus: float = Field(default=0, ge=0, description="its GPUs, all nodes")
    check: bool = Field(default=True, description="refuse past a quota (false: a cluster that runs "
                                                  "already is only recorded)")


class UsageOut(BaseModel):
    user: str
    name: str
    launcher: str
    cpus: float
    gpus: float
    created: float
    expires: float = Field(description="when it stops counting unless renewed (a bring-up or a connection renews it)")


class QuotaOut(BaseModel):
    group: str
    limit: Limits
    use: Amounts


class UsageReport(BaseModel):
    clusters: list[UsageOut] = Field(description="the caller's clusters counted now")
    quotas: list[QuotaOut] = Field(description="the quotas of the caller's groups and what each group uses")


class QuotaExceededBody(ErrorBody):
    group: str
    use: Amounts
    limit: Limits
    asked: Amounts
