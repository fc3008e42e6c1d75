"""API keys for programs: `mlxm_` + 32 random bytes (base64url), shown once.

Only a keyed hash is stored: HMAC-SHA256 under a server secret, so a leaked database does not
let anyone test guesses offline, and a presented key is hashed whatever its shape before the
lookup (a bound parameter, never SQL text: LiteLLM's pre-auth injection came through the
bearer token). The first characters stay visible to tell keys apart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "mlxm_"
VISIBLE_CHARS = 12  # "mlxm_" + 7 characters of the random part
MAX_PRESENTED_CHARS = 512


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def visible_prefix(key: str) -> str:
    return key[:VISIBLE_CHARS]


def key_hash(secret: bytes, presented: str) -> str:
    """The stored form of a key; any string hashes (truncated first: a bounded cost)."""
    data = presented[:MAX_PRESENTED_CHARS].encode("utf-8", "replace")
    return hmac.new(secret, data, hashlib.sha256).hexdigest()


def looks_like_api_key(presented: str) -> bool:
    return presented.startswith(KEY_PREFIX)
