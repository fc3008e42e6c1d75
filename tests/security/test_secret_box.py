"""Upstream keys at rest: AES-256-GCM tokens, the keyring, rotation and the master key sources."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from mlx_manager.security.secret_box import (
    ENV_VAR,
    KEY_FILE_NAME,
    Keyring,
    MasterKey,
    SecretError,
    add_file_key,
    key_id_of,
    last4,
    load_keyring,
    prune_file_keys,
    token_key_id,
)

CONTEXT = "provider:openai-main:api_key"
PLAINTEXT = "sk-proj-SECRETplaintext0123456789"
TOKEN_RE = re.compile(r"mlxm1:[0-9a-f]{16}:[A-Za-z0-9_-]+")
KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))


def body_bytes(token: str) -> bytes:
    body = token.split(":")[2]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def with_body(token: str, data: bytes) -> str:
    prefix = token.rsplit(":", 1)[0]
    return prefix + ":" + base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def rendered(exc: BaseException) -> str:
    """Everything a log would show for the error: message, repr and the whole chain."""
    return "".join(traceback.format_exception(exc)) + repr(exc)


# --- tokens ---


def test_round_trip() -> None:
    keyring = Keyring.from_bytes([KEY_A])
    for secret in (PLAINTEXT, "", "ключ-🔑-clé"):
        token = keyring.encrypt(secret, CONTEXT)
        assert keyring.decrypt(token, CONTEXT) == secret


def test_token_shape_names_the_key() -> None:
    keyring = Keyring.from_bytes([KEY_A])
    token = keyring.encrypt(PLAINTEXT, CONTEXT)
    assert TOKEN_RE.fullmatch(token)
    assert "=" not in token and PLAINTEXT not in token
    assert token_key_id(token) == key_id_of(KEY_A) == keyring.current.key_id
    # nonce (12) + plaintext + tag (16)
    assert len(body_bytes(token)) == 12 + len(PLAINTEXT) + 16
    # The id is HKDF-derived: it does not reveal the key (nor a plain hash prefix of it).
    assert keyring.current.key_id not in KEY_A.hex()


def test_each_encryption_has_a_fresh_nonce() -> None:
    keyring = Keyring.from_bytes([KEY_A])
    tokens = [keyring.encrypt(PLAINTEXT, CONTEXT) for _ in range(50)]
    assert len(set(tokens)) == 50
    assert len({body_bytes(token)[:12] for token in tokens}) == 50


@pytest.mark.parametrize("index", [0, 11, 12, -1], ids=["nonce", "nonce-end", "cipher", "tag"])
def test_tampered_token_is_refused(index: int) -> None:
    keyring = Keyring.from_bytes([KEY_A])
    token = keyring.encrypt(PLAINTEXT, CONTEXT)
    tampered = with_body(token, flip(body_bytes(token), index))
    with pytest.raises(SecretError, match="altered"):
        keyring.decrypt(tampered, CONTEXT)


def test_wrong_context_is_refused() -> None:
    keyring = Keyring.from_bytes([KEY_A])
    token = keyring.encrypt(PLAINTEXT, CONTEXT)
    with pytest.raises(SecretError, match="provider:other:api_key"):
        keyring.decrypt(token, "provider:other:api_key")


def test_unknown_key_id_is_refused() -> None:
    token = Keyring.from_bytes([KEY_B]).encrypt(PLAINTEXT, CONTEXT)
    keyring = Keyring.from_bytes([KEY_A])
    with pytest.raises(SecretError, match="not in the keyring") as caught:
        keyring.decrypt(token, CONTEXT)
    message = str(caught.value)
    assert key_id_of(KEY_B) in message and key_id_of(KEY_A) in message


def test_moved_key_id_is_refused() -> None:
    """Relabelling a token with another key's id does not make that key accept it."""
    keyring = Keyring.from_bytes([KEY_A, KEY_B])
    token = keyring.encrypt(PLAINTEXT, CONTEXT)
    relabelled = token.replace(key_id_of(KEY_A), key_id_of(KEY_B))
    with pytest.raises(SecretError, match="altered"):
        keyring.decrypt(relabelled, CONTEXT)


MALFORMED = {
    "empty": "",
    "plaintext-key": PLAINTEXT,
    "two-parts": "mlxm1:0123456789abcdef",
    "four-parts": "mlxm1:0123456789abcdef:AAAA:AAAA",
    "other-version": "mlxm2:0123456789abcdef:" + "A" * 40,
    "other-prefix": "sk-proj:0123456789abcdef:" + "A" * 40,
    "short-key-id": "mlxm1:0123abcd:" + "A" * 40,
    "upper-key-id": "mlxm1:0123456789ABCDEF:" + "A" * 40,
    "padding": "mlxm1:0123456789abcdef:" + "A" * 38 + "==",
    "bad-alphabet": "mlxm1:0123456789abcdef:" + "A" * 38 + "+/",
    "impossible-length": "mlxm1:0123456789abcdef:" + "A" * 41,
    "too-short": "mlxm1:0123456789abcdef:" + "A" * 36,
}


@pytest.mark.parametrize("token", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_token_is_refused_without_echo(token: str) -> None:
    keyring = Keyring.from_bytes([KEY_A])
    for call in (
        lambda: keyring.decrypt(token, CONTEXT),
        lambda: keyring.needs_rotation(token),
        lambda: keyring.rotate(token, CONTEXT),
        lambda: token_key_id(token),
    ):
        with pytest.raises(SecretError, match="malformed secret token") as caught:
            call()
        if token:
            assert token not in rendered(caught.value)
    assert PLAINTEXT not in rendered(caught.value)


def test_context_must_be_given() -> None:
    keyring = Keyring.from_bytes([KEY_A])
    with pytest.raises(SecretError, match="context"):
        keyring.encrypt(PLAINTEXT, "")
    token = keyring.encrypt(PLAINTEXT, CONTEXT)
    with pytest.raises(SecretError, match="context"):
        keyring.decrypt(token, "")


def test_secret_error_is_a_value_error() -> None:
    assert issubclass(SecretError, ValueError)


# --- the keyring and rotation ---


def test_rotation_across_two_keys() -> None:
    old_token = Keyring.from_bytes([KEY_A]).encrypt(PLAINTEXT, CONTEXT)
    keyring = Keyring.from_bytes([KEY_B, KEY_A])  # new first
    assert keyring.decrypt(old_token, CONTEXT) == PLAINTEXT
    assert keyring.needs_rotation(old_token)

    rotated = keyring.rotate(old_token, CONTEXT)
    assert token_key_id(rotated) == key_id_of(KEY_B)
    assert not keyring.needs_rotation(rotated)
    assert keyring.decrypt(rotated, CONTEXT) == PLAINTEXT
    # The new key alone is enough once everything is rotated.
    assert Keyring.from_bytes([KEY_B]).decrypt(rotated, CONTEXT) == PLAINTEXT
    # Already current: verified, returned unchanged.
    assert keyring.rotate(rotated, CONTEXT) == rotated


def test_rotate_checks_the_context() -> None:
    old_token = Keyring.from_bytes([KEY_A]).encrypt(PLAINTEXT, CONTEXT)
    keyring = Keyring.from_bytes([KEY_B, KEY_A])
    with pytest.raises(SecretError, match="altered"):
        keyring.rotate(old_token, "provider:other:api_key")


def test_needs_rotation_for_unknown_key() -> None:
    token = Keyring.from_bytes([KEY_B]).encrypt(PLAINTEXT, CONTEXT)
    keyring = Keyring.from_bytes([KEY_A])
    assert keyring.needs_rotation(token)
    with pytest.raises(SecretError, match="not in the keyring"):
        keyring.rotate(token, CONTEXT)


def test_keyring_validation() -> None:
    with pytest.raises(SecretError, match="at least one"):
        Keyring(())
    with pytest.raises(SecretError, match="32 bytes"):
        Keyring.from_bytes([b"short"])
    with pytest.raises(SecretError, match="more than once"):
        Keyring.from_bytes([KEY_A, KEY_B, KEY_A])


def test_repr_hides_the_keys() -> None:
    keyring = Keyring.from_bytes([KEY_A, KEY_B])
    shown = repr(keyring) + repr(keyring.current)
    assert key_id_of(KEY_A) in shown
    for key in (KEY_A, KEY_B):
        assert repr(key) not in shown and key.hex() not in shown


# --- master keys from the environment ---


def hex_key(key: bytes) -> str:
    return key.hex()


def b64url_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode()


KEY_FORMS = {
    "hex": hex_key,
    "hex-upper": lambda key: key.hex().upper(),
    "b64url": b64url_key,
    "b64url-padded": lambda key: base64.urlsafe_b64encode(key).decode(),
    "b64-standard": lambda key: base64.b64encode(key).decode(),
}


@pytest.mark.parametrize("form", KEY_FORMS.values(), ids=KEY_FORMS.keys())
def test_env_key_formats(form: Callable[[bytes], str], tmp_path: Path) -> None:
    key = bytes(range(200, 232))  # its base64 has '-', '_' (or '+', '/')
    keyring = load_keyring(tmp_path, {ENV_VAR: form(key)})
    assert keyring.key_ids == (key_id_of(key),)
    assert not (tmp_path / KEY_FILE_NAME).exists()  # the env wins; no file is made


def test_env_key_list_is_newest_first(tmp_path: Path) -> None:
    value = f" {hex_key(KEY_B)} , {b64url_key(KEY_A)}"
    keyring = load_keyring(tmp_path, {ENV_VAR: value})
    assert keyring.key_ids == (key_id_of(KEY_B), key_id_of(KEY_A))
    assert token_key_id(keyring.encrypt(PLAINTEXT, CONTEXT)) == key_id_of(KEY_B)


BAD_ENV = {
    "passphrase": "correct horse battery staple",
    "short-hex": "ab" * 31,
    "long-hex": "ab" * 33,
    "b64-of-16-bytes": b64url_key(bytes(range(16))),
    "b64-of-48-bytes": b64url_key(bytes(range(48))),
    "hex-with-0x": "0x" + "ab" * 32,
}


@pytest.mark.parametrize("value", BAD_ENV.values(), ids=BAD_ENV.keys())
def test_bad_env_key_is_refused(value: str, tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="64 hex characters or URL-safe base64") as caught:
        load_keyring(tmp_path, {ENV_VAR: value})
    assert ENV_VAR in str(caught.value)
    assert value not in rendered(caught.value)
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_bad_key_in_a_list_is_named_by_position(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match=f"{ENV_VAR} key 2 of 3"):
        load_keyring(tmp_path, {ENV_VAR: f"{hex_key(KEY_A)},typo,{hex_key(KEY_B)}"})
    with pytest.raises(SecretError, match=f"{ENV_VAR} key 2 of 2"):
        load_keyring(tmp_path, {ENV_VAR: f"{hex_key(KEY_A)},"})


def test_empty_or_placeholder_env_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="set but empty"):
        load_keyring(tmp_path, {ENV_VAR: "  "})
    with pytest.raises(SecretError, match="placeholder"):
        load_keyring(tmp_path, {ENV_VAR: "0" * 64})


def test_duplicate_env_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="more than once"):
        load_keyring(tmp_path, {ENV_VAR: f"{hex_key(KEY_A)},{b64url_key(KEY_A)}"})


# --- the key file ---


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "mlx-manager"
    first = load_keyring(data_dir, {})
    path = data_dir / KEY_FILE_NAME
    assert mode_of(path) == 0o600
    assert mode_of(data_dir) == 0o700
    stored = json.loads(path.read_text())["keys"]
    assert len(stored) == 1 and len(first.keys) == 1
    assert first.current.key_id == key_id_of(base64.urlsafe_b64decode(stored[0] + "="))

    second = load_keyring(data_dir, {})
    assert second == first
    token = first.encrypt(PLAINTEXT, CONTEXT)
    assert second.decrypt(token, CONTEXT) == PLAINTEXT


@pytest.mark.parametrize("umask", [0o000, 0o277], ids=["loose-umask", "strict-umask"])
def test_key_file_mode_is_exact_whatever_the_umask(umask: int, tmp_path: Path) -> None:
    previous = os.umask(umask)
    try:
        load_keyring(tmp_path, {})
        assert mode_of(tmp_path / KEY_FILE_NAME) == 0o600
        add_file_key(tmp_path)
        assert mode_of(tmp_path / KEY_FILE_NAME) == 0o600
    finally:
        os.umask(previous)


def test_existing_data_dir_is_used_as_is(tmp_path: Path) -> None:
    tmp_path.chmod(0o750)
    load_keyring(tmp_path, {})
    assert mode_of(tmp_path) == 0o750
    assert mode_of(tmp_path / KEY_FILE_NAME) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_too_open_key_file_is_refused(mode: int, tmp_path: Path) -> None:
    load_keyring(tmp_path, {})
    path = tmp_path / KEY_FILE_NAME
    path.chmod(mode)
    with pytest.raises(SecretError, match="chmod 600") as caught:
        load_keyring(tmp_path, {})
    assert f"{mode:04o}" in str(caught.value)
    for call in (lambda: add_file_key(tmp_path), lambda: prune_file_keys(tmp_path)):
        with pytest.raises(SecretError, match="chmod 600"):
            call()
    path.chmod(0o600)
    assert load_keyring(tmp_path, {})


def test_read_only_owner_file_is_accepted(tmp_path: Path) -> None:
    first = load_keyring(tmp_path, {})
    (tmp_path / KEY_FILE_NAME).chmod(0o400)
    assert load_keyring(tmp_path, {}) == first


@pytest.mark.parametrize(
    "text",
    ["", "{", "[]", '{"keys": []}', '{"keys": "abc"}', '{"keys": [1]}', '{"other": []}'],
)
def test_damaged_key_file_is_refused_not_replaced(text: str, tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    with pytest.raises(SecretError, match="damaged"):
        load_keyring(tmp_path, {})
    assert path.read_text() == text


def test_bad_key_in_file_is_refused_without_echo(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"keys": [b64url_key(KEY_A), "not-a-real-key-value"]}, handle)
    with pytest.raises(SecretError, match="key 2 in") as caught:
        load_keyring(tmp_path, {})
    assert "not-a-real-key-value" not in rendered(caught.value)


def test_add_file_key_then_prune(tmp_path: Path) -> None:
    original = load_keyring(tmp_path, {})
    old_token = original.encrypt(PLAINTEXT, CONTEXT)
    path = tmp_path / KEY_FILE_NAME

    grown = add_file_key(tmp_path)
    assert len(grown.keys) == 2
    assert grown.keys[1] == original.current  # the new key is prepended
    assert load_keyring(tmp_path, {}) == grown
    assert mode_of(path) == 0o600
    assert [entry.name for entry in tmp_path.iterdir()] == [KEY_FILE_NAME]  # no temp left
    assert grown.needs_rotation(old_token)
    new_token = grown.rotate(old_token, CONTEXT)
    assert token_key_id(new_token) == grown.current.key_id

    pruned = prune_file_keys(tmp_path)
    assert pruned.key_ids == (grown.current.key_id,)
    assert load_keyring(tmp_path, {}) == pruned
    assert mode_of(path) == 0o600
    assert pruned.decrypt(new_token, CONTEXT) == PLAINTEXT
    with pytest.raises(SecretError, match="not in the keyring"):
        pruned.decrypt(old_token, CONTEXT)


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    load_keyring(tmp_path, {})
    add_file_key(tmp_path)
    three = add_file_key(tmp_path)
    assert prune_file_keys(tmp_path, keep=5) == three  # nothing to drop
    assert prune_file_keys(tmp_path, keep=2).key_ids == three.key_ids[:2]
    with pytest.raises(SecretError, match="at least one"):
        prune_file_keys(tmp_path, keep=0)
    assert load_keyring(tmp_path, {}).key_ids == three.key_ids[:2]


def test_add_and_prune_need_an_existing_file(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="no master key file"):
        add_file_key(tmp_path)
    with pytest.raises(SecretError, match="no master key file"):
        prune_file_keys(tmp_path)
    assert not (tmp_path / KEY_FILE_NAME).exists()


# --- what errors and displays reveal ---


def test_no_plaintext_or_key_in_any_error() -> None:
    old = Keyring.from_bytes([KEY_A])
    token = old.encrypt(PLAINTEXT, CONTEXT)
    keyring = Keyring.from_bytes([KEY_B, KEY_A])
    failures = [
        lambda: keyring.decrypt(token, "provider:other:api_key"),
        lambda: keyring.decrypt(with_body(token, flip(body_bytes(token), 20)), CONTEXT),
        lambda: Keyring.from_bytes([KEY_B]).decrypt(token, CONTEXT),
        lambda: keyring.rotate(token, "provider:other:api_key"),
        lambda: keyring.decrypt(PLAINTEXT, CONTEXT),
        lambda: keyring.encrypt("\ud800" + PLAINTEXT, CONTEXT),
    ]
    for failure in failures:
        with pytest.raises(SecretError) as caught:
            failure()
        shown = rendered(caught.value)
        assert PLAINTEXT not in shown
        for key in (KEY_A, KEY_B):
            assert key.hex() not in shown and b64url_key(key) not in shown


def test_master_key_generate_is_random() -> None:
    assert MasterKey.generate() != MasterKey.generate()


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        ("sk-proj-abcdefgh1234", "…1234"),
        ("12345678", "…5678"),
        ("1234567", "…"),
        ("abc", "…"),
        ("", "…"),
    ],
)
def test_last4(secret: str, shown: str) -> None:
    assert last4(secret) == shown
