"""The account service: who a credential is, and the account operations of the API.

Modes, decided at every request:
- **open**: no `--api-key`, no user and no API key exist. A loopback client is the anonymous
  admin (a local tool works with no set-up, as before accounts); any other client is refused,
  so a server bound to a public address is never open by accident.
- **closed**: anything else. A request needs a valid credential; a missing, unknown,
  expired, revoked or conflicting one is a 401, never an anonymous fallback.

Users and keys are cached briefly (USER_CACHE_S) and dropped from the cache by every change
this process makes, so a demotion, disable or password change ends that user's sessions on
their next request (the token version moved on) and a revoked key stops at once.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from mlx_manager.accounts.rate_limit import RateLimiter
from mlx_manager.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from mlx_manager.security import api_keys, passwords, session_tokens
from mlx_manager.security.credentials import Credential
from mlx_manager.security.principal import ANONYMOUS, STATIC_KEY, KeyScopes, Principal, Role
from mlx_manager.store.accounts_repo import AccountsRepository, KeyRecord, UserRecord

log = logging.getLogger(__name__)

SignupMode = Literal["closed", "approval", "open"]
USER_CACHE_S = 5.0
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: str  # shown once
    record: KeyRecord


class AccountService:
    def __init__(
        self,
        repo: AccountsRepository | None = None,
        static_key: str | None = None,
        signup: SignupMode = "closed",
    ) -> None:
        self._repo = repo
        self._static_key = static_key.encode() if static_key else None
        self.signup = signup
        self.limiter = RateLimiter()
        self._secret = b""
        self._ended_versions: dict[int, int] = {}  # user -> the first valid token version
        self._revoked_keys: set[int] = set()
        self._has_accounts = False
        self._accounts_checked_at = time.monotonic()
        self._users: dict[int, tuple[float, UserRecord | None]] = {}
        self._keys: dict[str, tuple[float, KeyRecord | None]] = {}
        self.setup_token: str | None = None

    async def start(self, repo: AccountsRepository) -> None:
        """Attach the store: the server's secret, whether accounts exist, the set-up token."""
        self._repo = repo
        self._secret = await self._repo.server_secret("auth")
        self._has_accounts = await self._repo.has_accounts()
        if await self._repo.count_admins() == 0 and self._static_key is None:
            self.setup_token = secrets.token_urlsafe(24)

    async def _recheck_accounts(self) -> None:
        now = time.monotonic()
        if now < self._accounts_checked_at + USER_CACHE_S or self._repo is None:
            return
        self._accounts_checked_at = now
        self._has_accounts = await self._repo.has_accounts()

    @property
    def open_mode(self) -> bool:
        return self._static_key is None and not self._has_accounts

    def _repository(self) -> AccountsRepository:
        if self._repo is None:
            raise Conflict("accounts need the store, which is not open")
        return self._repo

    # --- who is calling ----------------------------------------------------------------

    async def authenticate(self, credential: Credential | None, loopback: bool) -> Principal:
        if self.open_mode and self._repo is not None:
            await self._recheck_accounts()  # made by another process (the CLI)?
        if self.open_mode:
            if loopback:
                return ANONYMOUS
            raise AuthenticationFailed(
                "this server has no credentials configured and answers only loopback clients: "
                "set --api-key or create an admin (mlx-manager users create-admin)"
            )
        if credential is None:
            raise AuthenticationFailed("no credentials: send an API key or sign in")
        if credential.kind == "session":
            return await self._session_principal(credential.value)
        return await self._key_principal(credential.value)

    async def _key_principal(self, presented: str) -> Principal:
        if self._static_key is not None and hmac.compare_digest(
            presented.encode("utf-8", "replace"), self._static_key
        ):
            return STATIC_KEY
        if self._repo is None or not self._secret:
            raise AuthenticationFailed("invalid API key")
        record = await self._key_record(api_keys.key_hash(self._secret, presented))
        now = datetime.now(UTC)
        if record is None or record.revoked_at is not None:
            raise AuthenticationFailed("invalid API key")
        if record.expires_at is not None and _aware(record.expires_at) <= now:
            raise AuthenticationFailed("this API key has expired")
        user = await self._user(record.user_id)
        principal = self._user_principal(user, "api-key")
        return dataclasses.replace(principal, key_id=record.id, via="api-key", scopes=record.scopes)

    async def _session_principal(self, token: str) -> Principal:
        claims = session_tokens.read_session(self._secret, token) if self._secret else None
        if claims is None:
            raise AuthenticationFailed("the session is not valid: sign in again")
        user = await self._user(claims.user_id)
        if user is None or user.token_version != claims.token_version:
            raise AuthenticationFailed("the session has ended: sign in again")
        return self._user_principal(user, "session")

    def _user_principal(self, user: UserRecord | None, via: str) -> Principal:
        if user is None or user.disabled:
            raise AuthenticationFailed("this account is disabled or gone")
        return Principal(
            user.username, user.role, user_id=user.id, via=via, token_version=user.token_version
        )

    async def _user(self, user_id: int) -> UserRecord | None:
        cached = self._users.get(user_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        user = await self._repository().user(user_id)
        self._users[user_id] = (time.monotonic() + USER_CACHE_S, user)
        return user

    async def _key_record(self, key_hash: str) -> KeyRecord | None:
        cached = self._keys.get(key_hash)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        record = await self._repository().key_by_hash(key_hash)
        if len(self._keys) > 10_000:  # unknown keys are cached too: bound it
            self._keys.clear()
        self._keys[key_hash] = (time.monotonic() + USER_CACHE_S, record)
        return record

    def _forget(self, user_id: int | None = None) -> None:
        if user_id is not None:
            self._users.pop(user_id, None)
        self._keys.clear()

    # --- usage (the generation seam's UsageGate) --------------------------------------

    def admit(self, principal: Principal) -> None:
        if principal.key_id is not None:
            self.limiter.admit(principal.key_id, principal.scopes)

    def spend(self, principal: Principal, tokens: int) -> None:
        if principal.key_id is not None:
            self.limiter.spend(principal.key_id, tokens)

    def still_valid(self, principal: Principal) -> bool:
        """What this process changed since the principal was authenticated (a dict lookup
        per event of a stream)."""
        if principal.key_id is not None and principal.key_id in self._revoked_keys:
            return False
        ended = self._ended_versions.get(principal.user_id or -1)
        return ended is None or (principal.token_version or 0) >= ended

    # --- sessions ----------------------------------------------------------------------

    async def login(self, username: str, password: str) -> tuple[UserRecord, str]:
        """The user and a session token; one message for every failure (no user probing)."""
        found = await self._repository().login_record(username)
        stored = found[1] if found else passwords.DUMMY_HASH
        valid = await passwords.verify_password(stored, password)
        if found is None or not valid:
            raise AuthenticationFailed("wrong user name or password")
        user = found[0]
        if user.disabled:
            raise AuthenticationFailed("this account is disabled")
        token = session_tokens.issue_session(self._secret, user.id, user.token_version)
        return user, token

    async def register(self, username: str, password: str) -> UserRecord:
        if self.signup == "closed":
            raise PermissionDenied("sign-up is closed on this server: ask an administrator")
        passwords_ok(password)
        role = Role.USER if self.signup == "open" else Role.PENDING
        user = await self._repository().create_user(
            username, await passwords.hash_password(password), role, username
        )
        self._has_accounts = True
        return user

    async def setup_admin(self, token: str, username: str, password: str) -> UserRecord:
        """The first admin, with the one-time token printed at start."""
        expected = self.setup_token
        if expected is None or not hmac.compare_digest(token.encode(), expected.encode()):
            raise AuthenticationFailed("the set-up token is not valid (or already used)")
        if await self._repository().count_admins() > 0:  # made meanwhile (the CLI)
            self.setup_token = None
            raise AuthenticationFailed("the set-up token is not valid (or already used)")
        user = await self.create_user(username, password, Role.ADMIN, "setup")
        self.setup_token = None
        return user

    async def change_password(self, user_id: int, current: str, new: str) -> None:
        repo = self._repository()
        stored = await repo.password_hash(user_id)
        if stored is None or not await passwords.verify_password(stored, current):
            raise AuthenticationFailed("the current password is wrong")
        passwords_ok(new)
        changed = await repo.change_user(
            user_id, str(user_id), "user.password", password_hash=await passwords.hash_password(new)
        )
        self._forget(user_id)
        if changed is not None:
            self._ended_versions[user_id] = changed.token_version
        if changed is None:
            raise NotFound("no such user")

    def session_token(self, user: UserRecord) -> str:
        return session_tokens.issue_session(self._secret, user.id, user.token_version)

    # --- administration ----------------------------------------------------------------

    async def create_user(self, username: str, password: str, role: Role, actor: str) -> UserRecord:
        passwords_ok(password)
        user = await self._repository().create_user(
            username, await passwords.hash_password(password), role, actor
        )
        self._has_accounts = True
        return user

    async def user(self, user_id: int) -> UserRecord | None:
        return await self._repository().user(user_id)

    async def users(self) -> list[UserRecord]:
        return await self._repository().users()

    async def change_user(
        self,
        user_id: int,
        actor: Principal,
        *,
        role: Role | None = None,
        disabled: bool | None = None,
    ) -> UserRecord:
        if actor.user_id == user_id and (disabled or (role is not None and role is not Role.ADMIN)):
            raise Conflict("an administrator cannot demote or disable their own account")
        action = (
            "user.role" if role is not None else ("user.disable" if disabled else "user.enable")
        )
        user = await self._repository().change_user(
            user_id, actor.subject, action, role=role, disabled=disabled
        )
        self._forget(user_id)
        if user is not None:
            self._ended_versions[user_id] = user.token_version
        if user is None:
            raise NotFound(f"no user with id {user_id}", code="user_not_found")
        return user

    async def create_key(
        self,
        actor: Principal,
        owner_id: int | None,
        name: str,
        scopes: KeyScopes,
        expires_in_days: float | None,
    ) -> IssuedKey:
        """A new key; shown once. A key made with a key is no wider than that key."""
        repo = self._repository()
        if owner_id is None:
            if actor.user_id is None:
                raise InvalidRequest("say which user the key is for (user_id)", param="user_id")
            owner_id = actor.user_id
        owner = await repo.user(owner_id)
        if owner is None or owner.disabled or owner.role is Role.PENDING:
            raise InvalidRequest(f"user {owner_id} cannot hold keys (missing, disabled or pending)")
        narrowed = narrow(actor.scopes, scopes)
        expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
        key = api_keys.new_api_key()
        record = await repo.create_key(
            owner_id,
            name,
            api_keys.visible_prefix(key),
            api_keys.key_hash(self._secret, key),
            narrowed,
            expires,
            actor.subject,
        )
        self._has_accounts = True
        return IssuedKey(key, record)

    async def keys(self, user_id: int | None = None) -> list[KeyRecord]:
        return await self._repository().keys(user_id)

    async def record(self, actor: Principal, action: str, target: str) -> None:
        """An admin change made elsewhere (a model loaded or unloaded), in the same record."""
        if self._repo is not None:
            await self._repo.record(actor.subject, action, target, {})

    async def revoke_key(self, key_id: int, actor: Principal) -> KeyRecord:
        record = await self._repository().revoke_key(key_id, actor.subject)
        self._forget()
        self._revoked_keys.add(key_id)
        if record is None:
            raise NotFound(f"no API key with id {key_id}", code="key_not_found")
        return record


def passwords_ok(password: str) -> None:
    try:
        passwords.check_password_policy(password)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="password") from None


def narrow(creator: KeyScopes, wanted: KeyScopes) -> KeyScopes:
    """`wanted` within `creator`'s own scopes (CVE-2026-47101: a key minted wider than its
    maker): a 403 for a model pattern the creator lacks; limits and local_only inherited."""
    outside = [m for m in wanted.models if creator.models and not _within(m, creator)]
    if outside:  # no models asked: the creator's own
        raise PermissionDenied(f"a key cannot grant models its creator lacks: {', '.join(outside)}")
    return KeyScopes(
        wanted.models or creator.models,
        _tighter(creator.rpm, wanted.rpm),
        _tighter(creator.tpm, wanted.tpm),
        wanted.local_only or creator.local_only,
    )


def _within(pattern: str, creator: KeyScopes) -> bool:
    """A pattern is within the creator's: one of theirs, or a plain name they allow (a glob
    matched as text against a glob could be wider: `tiny-*` against `tiny-?`)."""
    if pattern in creator.models:
        return True
    return not any(c in pattern for c in "*?[") and creator.allows_model(pattern)


def _tighter(a: int | None, b: int | None) -> int | None:
    return b if a is None else (a if b is None else min(a, b))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
