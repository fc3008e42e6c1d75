"""The one credential parser, session tokens (algorithm pinned), key hashing."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from mlx_manager.security import api_keys, session_tokens
from mlx_manager.security.credentials import (
    ConflictingCredentials,
    Credential,
    presented_credential,
)

SECRET = b"s" * 32


def test_bearer_and_x_api_key_are_one_credential() -> None:
    assert presented_credential({"authorization": "Bearer k1"}) == Credential("bearer", "k1")
    assert presented_credential({"x-api-key": "k1"}) == Credential("bearer", "k1")
    same = {"authorization": "Bearer k1", "x-api-key": "k1"}
    assert presented_credential(same) == Credential("bearer", "k1")
    with pytest.raises(ConflictingCredentials):
        presented_credential({"authorization": "Bearer k1", "x-api-key": "k2"})


def test_a_key_header_wins_over_the_session_cookie() -> None:
    headers = {"cookie": "mlxm_session=tok; other=1"}
    assert presented_credential(headers) == Credential("session", "tok")
    assert presented_credential({**headers, "x-api-key": "k"}) == Credential("bearer", "k")
    assert presented_credential({"authorization": "Basic abc"}) is None
    assert presented_credential({"cookie": "%%%bad"}) is None


def test_sessions_round_trip_and_refuse_forgeries() -> None:
    token = session_tokens.issue_session(SECRET, 7, 3)
    claims = session_tokens.read_session(SECRET, token)
    assert claims is not None and (claims.user_id, claims.token_version) == (7, 3)
    assert session_tokens.read_session(b"x" * 32, token) is None  # another server's secret
    expired = session_tokens.issue_session(SECRET, 7, 3, ttl_s=-10)
    assert session_tokens.read_session(SECRET, expired) is None
    _header, payload, _ = token.split(".")
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    assert session_tokens.read_session(SECRET, unsigned) is None
    other_alg = jwt.encode(
        {"sub": "7", "ver": 3, "iss": "mlx-manager", "iat": 1, "exp": 2**40},
        SECRET,
        algorithm="HS512",
    )
    assert session_tokens.read_session(SECRET, other_alg) is None
    assert session_tokens.read_session(SECRET, "garbage") is None


def test_key_hashes_are_keyed_and_bounded() -> None:
    key = api_keys.new_api_key()
    assert key.startswith("mlxm_") and len(key) > 40
    assert api_keys.key_hash(SECRET, key) == api_keys.key_hash(SECRET, key)
    assert api_keys.key_hash(SECRET, key) != api_keys.key_hash(b"t" * 32, key)
    hostile = "' OR 1=1 --" + "x" * 10_000
    assert len(api_keys.key_hash(SECRET, hostile)) == 64


def _b64(data: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
