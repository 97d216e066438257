"""Secret values at rest: encrypted with the registry's ``secrets.key`` before the database sees them.

A secret is a resource of type ``"secret"`` like any other (names, versions, shares, rollback);
its version's config holds what ``Secret.config()`` says (name, provider, env var names: never a
value) plus ``"encrypted"``: the values as one Fernet token. Only ``GET /v1/secrets/{path}``
decrypts it, for a user with read access; every other route strips it (:func:`public_config`).
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

FIELD = "encrypted"


class Vault:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, values: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(values, sort_keys=True).encode()).decode("ascii")

    def open(self, config: dict[str, Any]) -> dict[str, Any] | None:
        """The values sealed in ``config``; None when it holds none (saved without values)."""
        token = config.get(FIELD)
        if not token:
            return None
        try:
            return json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, ValueError):
            raise ValueError("this secret was encrypted with another secrets.key than the registry "
                             "has now: save its values again") from None


def public_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the sealed values (what loads, caches and listings see)."""
    return {k: v for k, v in config.items() if k != FIELD} if FIELD in config else config
