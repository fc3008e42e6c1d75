"""Web UI session tokens: JWT (PyJWT) signed HS256 with a server secret; the algorithm is
pinned on both sides (no `alg: none`, no key confusion). A token names the user and the
user's token version: the account service refuses it once the version moved on (role change,
disable, password change), so revocation is immediate although the token is stateless."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
ISSUER = "mlx-manager"
SESSION_TTL_S = 8 * 3600


@dataclass(frozen=True, slots=True)
class SessionClaims:
    user_id: int
    token_version: int
    expires_at: float


def issue_session(
    secret: bytes, user_id: int, token_version: int, ttl_s: float = SESSION_TTL_S
) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": str(user_id),
        "ver": token_version,
        "iat": now,
        "exp": now + int(ttl_s),
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_session(secret: bytes, token: str) -> SessionClaims | None:
    """The claims of a valid, unexpired token of ours; None for anything else."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
        return SessionClaims(int(claims["sub"]), int(claims["ver"]), float(claims["exp"]))
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return None
