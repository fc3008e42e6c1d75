"""Upstream API keys encrypted at rest: AES-256-GCM under a keyring of master keys.

What it protects against: the database leaking (a copied SQLite file, a backup, a dump of the
PostgreSQL tables, a row shown in a log). Without the master key a stored token is opaque and
cannot be altered undetected. What it does not protect against: a compromise of the host that
runs the server. Whoever can read the key file (or the server's environment) and the database
can decrypt every key, and the running server holds the keys in memory. Keep `secret.key` out
of database backups, or back it up apart from them.

Why it is written this way:

- AES-GCM from `cryptography` (DESIGN.md: use the field's libraries; never hand-rolled
  crypto). It is an AEAD: it encrypts and authenticates in one call, so a flipped bit fails
  to decrypt instead of yielding a different key.
- A fresh random 96-bit nonce per encryption. GCM breaks if a nonce repeats under one key;
  random nonces are safe for about 2**32 encryptions per key, far beyond any number of stored
  credentials.
- Associated data = the token version and a caller-given context (e.g.
  ``"provider:openai-main:api_key"``), so a token copied into another row or column fails to
  decrypt rather than handing one provider's key to another.
- A versioned, self-describing token ``mlxm1:<key id>:<base64url(nonce || ciphertext)>``: the
  key id says which master key encrypted it, so several keys can decrypt at once and rotation
  is "add a key, re-encrypt, prune" without guessing. The key id is derived from the key by
  HKDF (a one-way, domain-separated function), so it names a key without revealing it.
- Keys come from ``MLX_MANAGER_SECRET_KEY`` (newest first, comma-separated) or else from
  ``<data dir>/secret.key``, created 0600 on first run. A malformed env key is refused rather
  than derived from, so a typo can never become a weak key that encrypts everything; a key
  file readable by group or others is refused, as ssh refuses a loose private key.

No error message carries a plaintext, a key or a token: a "malformed token" may well be a
plaintext key stored by mistake.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_VERSION = "mlxm1"
ENV_VAR = "MLX_MANAGER_SECRET_KEY"
KEY_FILE_NAME = "secret.key"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_ID_CHARS = 16
KEY_FORMAT = (
    "64 hex characters or URL-safe base64 of 32 bytes "
    "(make one with `openssl rand -hex 32` or "
    '`python -c "import secrets; print(secrets.token_urlsafe(32))"`)'
)

_KEY_ID_INFO = b"mlx-manager secret-box key id v1"
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_BODY_RE = re.compile(r"[A-Za-z0-9_-]+")
_HEX_KEY_RE = re.compile(r"[0-9a-fA-F]{64}")
# 43 characters carry 258 bits, i.e. 32 bytes; the standard alphabet (+/) is accepted too, as
# `openssl rand -base64 32` writes it.
_B64_KEY_RE = re.compile(r"[A-Za-z0-9_+/-]{43}=?")
_VERSION_RE = re.compile(r"mlxm[0-9]{1,3}")


class SecretError(ValueError):
    """A token or master key that cannot be used: unknown key id, tampering, wrong context,
    malformed input, or an unsafe key file. Never carries a plaintext or a key."""


def key_id_of(key: bytes) -> str:
    """The public id of a master key: 16 hex characters, HKDF-SHA256 of the key."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_ID_CHARS // 2, salt=None, info=_KEY_ID_INFO)
    return hkdf.derive(key).hex()


@dataclass(frozen=True, slots=True)
class MasterKey:
    """One 32-byte AES-256 key and its id. The key bytes never appear in repr."""

    key: bytes = field(repr=False)
    key_id: str = field(init=False)
    _aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != KEY_BYTES:
            raise SecretError(f"a master key must be exactly {KEY_BYTES} bytes")
        object.__setattr__(self, "key_id", key_id_of(self.key))
        object.__setattr__(self, "_aead", AESGCM(self.key))

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(AESGCM.generate_key(bit_length=KEY_BYTES * 8))

    def seal(self, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        """(nonce, ciphertext with tag) under a fresh random nonce."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, plaintext, aad)

    def unseal(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        return self._aead.decrypt(nonce, ciphertext, aad)


@dataclass(frozen=True, slots=True)
class _Token:
    key_id: str
    nonce: bytes
    ciphertext: bytes  # with the 16-byte GCM tag at the end

    def encode(self) -> str:
        body = base64.urlsafe_b64encode(self.nonce + self.ciphertext).rstrip(b"=").decode()
        return f"{TOKEN_VERSION}:{self.key_id}:{body}"


def _malformed(reason: str) -> SecretError:
    expected = f"{TOKEN_VERSION}:<16 hex key id>:<base64url data>"
    return SecretError(f"malformed secret token ({reason}); expected {expected}")


def _decode_body(body: str) -> bytes:
    if not _BODY_RE.fullmatch(body) or len(body) % 4 == 1:
        raise _malformed("the data is not unpadded base64url")
    data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    if len(data) < NONCE_BYTES + TAG_BYTES:
        raise _malformed("the data is too short")
    return data


def _parse_token(token: str) -> _Token:
    parts = token.split(":") if isinstance(token, str) else []
    if len(parts) != 3:
        raise _malformed("not three ':'-separated parts")
    version, key_id, body = parts
    if version != TOKEN_VERSION:
        shown = f"version {version!r}" if _VERSION_RE.fullmatch(version) else "unknown prefix"
        raise _malformed(f"{shown}, only {TOKEN_VERSION!r} is supported")
    if not _KEY_ID_RE.fullmatch(key_id):
        raise _malformed("the key id is not 16 lowercase hex characters")
    data = _decode_body(body)
    return _Token(key_id, data[:NONCE_BYTES], data[NONCE_BYTES:])


def token_key_id(token: str) -> str:
    """The id of the master key that encrypted `token` (SecretError if malformed)."""
    return _parse_token(token).key_id


def _aad(context: str) -> bytes:
    if not isinstance(context, str) or not context:
        raise SecretError("a secret needs a non-empty context string, e.g. 'provider:x:api_key'")
    return f"{TOKEN_VERSION}\x00{context}".encode()


def _utf8(plaintext: str) -> bytes:
    if not isinstance(plaintext, str):
        raise SecretError("only text secrets can be encrypted")
    try:
        return plaintext.encode("utf-8")
    except UnicodeEncodeError:
        raise SecretError("the secret is not encodable as UTF-8") from None


@dataclass(frozen=True, slots=True)
class Keyring:
    """Master keys, newest first: the first encrypts, every one decrypts (matched by key id)."""

    keys: tuple[MasterKey, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "keys", tuple(self.keys))
        if not self.keys:
            raise SecretError("a keyring needs at least one master key")
        ids = [key.key_id for key in self.keys]
        if len(set(ids)) != len(ids):
            raise SecretError("the same master key appears more than once in the keyring")

    @classmethod
    def from_bytes(cls, keys: Iterable[bytes]) -> Keyring:
        return cls(tuple(MasterKey(key) for key in keys))

    @property
    def current(self) -> MasterKey:
        return self.keys[0]

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(key.key_id for key in self.keys)

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce, ciphertext = self.current.seal(_utf8(plaintext), _aad(context))
        return _Token(self.current.key_id, nonce, ciphertext).encode()

    def decrypt(self, token: str, context: str) -> str:
        parsed = _parse_token(token)
        aad = _aad(context)
        key = self._key(parsed.key_id)
        try:
            plaintext = key.unseal(parsed.nonce, parsed.ciphertext, aad)
        except InvalidTag:
            raise SecretError(
                f"secret token does not authenticate for context {context!r}: "
                "it was altered, or it belongs to another row"
            ) from None
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretError("the decrypted secret is not UTF-8 text") from None

    def needs_rotation(self, token: str) -> bool:
        """True when `token` was not encrypted by the current key (an unknown key included)."""
        return _parse_token(token).key_id != self.current.key_id

    def rotate(self, token: str, context: str) -> str:
        """`token` re-encrypted under the current key. The token is always decrypted (so a bad
        one fails here, not later); one already under the current key comes back unchanged."""
        plaintext = self.decrypt(token, context)
        if not self.needs_rotation(token):
            return token
        return self.encrypt(plaintext, context)

    def _key(self, key_id: str) -> MasterKey:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        raise SecretError(
            f"secret token was encrypted with master key {key_id}, which is not in the keyring "
            f"({', '.join(self.key_ids)}): was the master key changed, or pruned before "
            "re-encryption?"
        )


# --- master keys: where they come from ---


def parse_key(text: str, where: str) -> bytes:
    """32 key bytes from 64 hex characters or base64 (URL-safe or standard, padding optional).

    `where` names the source in the error, which never repeats `text`."""
    key = _decode_key_text(text)
    if key is None:
        raise SecretError(
            f"{where} is not a valid master key ({len(text)} characters): expected {KEY_FORMAT}"
        )
    if len(set(key)) == 1:
        raise SecretError(f"{where} is a placeholder (one byte repeated): expected {KEY_FORMAT}")
    return key


def _decode_key_text(text: str) -> bytes | None:
    if _HEX_KEY_RE.fullmatch(text):
        return bytes.fromhex(text)
    if not _B64_KEY_RE.fullmatch(text):
        return None
    standard = text.replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error:
        return None
    return key if len(key) == KEY_BYTES else None


def _encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode()


def keyring_from_env_value(value: str) -> Keyring:
    """The keyring named by an `MLX_MANAGER_SECRET_KEY` value: keys comma-separated, newest
    first."""
    if not value.strip():
        raise SecretError(
            f"{ENV_VAR} is set but empty: unset it to use the key file, or set it to {KEY_FORMAT}"
        )
    items = value.split(",")
    count = len(items)
    return Keyring.from_bytes(
        parse_key(item.strip(), ENV_VAR if count == 1 else f"{ENV_VAR} key {number} of {count}")
        for number, item in enumerate(items, 1)
    )


def load_keyring(data_dir: Path, env: Mapping[str, str] = os.environ) -> Keyring:
    """The master keys: from `MLX_MANAGER_SECRET_KEY` when set, else from
    `data_dir/secret.key`, created with one random key on first run."""
    value = env.get(ENV_VAR)
    if value is not None:
        return keyring_from_env_value(value)
    path = key_file_path(data_dir)
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        return _create_key_file(path)


def add_file_key(data_dir: Path) -> Keyring:
    """Prepend a fresh key to the key file (it encrypts from now on; older keys still decrypt).
    Re-encrypt everything with `Keyring.rotate`, then `prune_file_keys`."""
    path = key_file_path(data_dir)
    keyring = Keyring((MasterKey.generate(), *_read_existing_key_file(path).keys))
    _replace_key_file(path, keyring.keys)
    return keyring


def prune_file_keys(data_dir: Path, keep: int = 1) -> Keyring:
    """Drop all but the `keep` newest keys from the key file. Only after every token has been
    re-encrypted: a token under a dropped key can never be decrypted again."""
    if keep < 1:
        raise SecretError("keep at least one master key")
    path = key_file_path(data_dir)
    current = _read_existing_key_file(path)
    pruned = Keyring(current.keys[:keep])
    if pruned != current:
        _replace_key_file(path, pruned.keys)
    return pruned


# --- the key file ---


def key_file_path(data_dir: Path) -> Path:
    return Path(data_dir) / KEY_FILE_NAME


def _check_private(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise SecretError(f"master key file {path} is not a regular file")
    if mode & 0o077:
        raise SecretError(
            f"master key file {path} has permissions {stat.S_IMODE(mode):04o}, which let group "
            f"or others read it; it must be private to its owner: run `chmod 600 {path}`"
        )


def _read_key_file(path: Path) -> Keyring:
    with open(path, encoding="utf-8") as handle:
        _check_private(path, os.fstat(handle.fileno()).st_mode)
        text = handle.read()
    return Keyring.from_bytes(_decode_key_file(text, path))


def _read_existing_key_file(path: Path) -> Keyring:
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        raise SecretError(
            f"no master key file at {path} (keys from {ENV_VAR} are managed outside the server)"
        ) from None


def _decode_key_file(text: str, path: Path) -> list[bytes]:
    damaged = SecretError(
        f'master key file {path} is damaged: expected JSON {{"keys": ["<base64url key>", ...]}}'
    )
    try:
        document = json.loads(text)
    except ValueError:
        raise damaged from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise damaged
    return [parse_key(key, f"key {number} in {path}") for number, key in enumerate(keys, 1)]


def _encode_key_file(keys: Sequence[MasterKey]) -> str:
    return json.dumps({"keys": [_encode_key(key.key) for key in keys]}, indent=2) + "\n"


def _write_private(fd: int, keys: Sequence[MasterKey]) -> None:
    """Write the key file's text to `fd` (opened 0600) and flush it to disk; closes `fd`."""
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # exact, whatever the umask
        handle.write(_encode_key_file(keys))
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _create_key_file(path: Path) -> Keyring:
    """A new key file with one random key. O_EXCL with mode 0600: never readable by others,
    not even for an instant, and never over a file another process has just created."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    keyring = Keyring((MasterKey.generate(),))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    try:
        _write_private(fd, keyring.keys)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return keyring


def _replace_key_file(path: Path, keys: Sequence[MasterKey]) -> None:
    """Swap in a new key file atomically: a 0600 temp file beside it, then os.replace."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _write_private(fd, keys)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def last4(secret: str) -> str:
    """A write-only secret as an API may show it: "…" and its last 4 characters, or "…" alone
    when it is shorter than 8 (so most of a short secret is never revealed)."""
    return "…" + secret[-4:] if len(secret) >= 8 else "…"
