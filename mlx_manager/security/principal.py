"""The caller of a request, as the generation service and the routes see it.

Authentication (api/) turns a request's credentials into a `Principal`; everything below the
routes decides from the principal alone, never from headers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    ADMIN = "admin"
    USER = "user"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str  # who: a user name, an API key's id, "static-key", "anonymous"
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


# The server's own --api-key: an admin key.
STATIC_KEY = Principal("static-key", Role.ADMIN)
# No credentials configured (the loopback default): the caller may do everything.
ANONYMOUS = Principal("anonymous", Role.ADMIN)
