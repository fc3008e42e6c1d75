"""Password hashes: Argon2id (argon2-cffi, its RFC 9106 low-memory profile), verified in a
worker thread so a login does not stall the event loop for the hash's ~50 ms."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024  # Argon2 takes any length; a cap keeps a login from being a DoS

_hasher = PasswordHasher()  # Argon2id, 64 MiB, t=3, p=4


def check_password_policy(password: str) -> None:
    """ValueError when a new password is too short or too long (no message repeats it)."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"a password may have at most {MAX_PASSWORD_CHARS} characters")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(stored_hash: str, password: str) -> bool:
    if len(password) > MAX_PASSWORD_CHARS:
        return False

    def verify() -> bool:
        try:
            return _hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


# A hash to verify against when the user does not exist: a login's time does not say
# whether the name is taken.
DUMMY_HASH = _hasher.hash("not a real password, only for timing")
