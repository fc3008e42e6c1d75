"""The caller of a request, as the generation service and the routes see it.

Authentication (api/auth.py with the account service) turns a request's credential into a
`Principal`; everything below the routes decides from the principal alone, never from
headers. A principal carries its key's scopes, so the generation seam can refuse a model, a
route off the machine, or a request over the key's rate.
"""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import dataclass, field


class Role(enum.StrEnum):
    ADMIN = "admin"
    USER = "user"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class KeyScopes:
    """What an API key may do. Empty `models`: every model."""

    models: tuple[str, ...] = ()  # glob patterns (`*`, `?`) on the requested model name
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens (prompt + completion) per minute
    local_only: bool = False  # never routed to an upstream off this machine

    def allows_model(self, model: str) -> bool:
        return not self.models or any(fnmatch.fnmatchcase(model, p) for p in self.models)


UNSCOPED = KeyScopes()


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str  # who: a user name, "static-key", "anonymous"
    role: Role
    user_id: int | None = None
    key_id: int | None = None  # the API key used, if any
    token_version: int | None = None  # the account's, when authenticated: see AccountService
    via: str = "none"  # static-key | api-key | session | anonymous
    scopes: KeyScopes = field(default=UNSCOPED)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


# The server's own --api-key: an admin key.
STATIC_KEY = Principal("static-key", Role.ADMIN, via="static-key")
# No credentials configured at all (no --api-key, no accounts, no keys) and a loopback
# client: the caller may do everything, as a local tool expects.
ANONYMOUS = Principal("anonymous", Role.ADMIN, via="anonymous")
