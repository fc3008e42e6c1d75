"""The store's tables. Bodies that grow with features (a provider's timeouts, a route's
targets and options) are JSON documents validated by the config models on the way in and out,
so a new option needs no migration; what is queried or unique is a column."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mlx_manager.store.columns import Timestamp


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class ProviderRow(Base):
    """An upstream provider written through the admin API. The key is ciphertext only."""

    __tablename__ = "providers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    base_url: Mapped[str] = mapped_column(String(2048))
    options: Mapped[dict[str, Any]] = mapped_column()  # timeouts, default_max_tokens, key env
    api_key_ciphertext: Mapped[str | None] = mapped_column(Text)
    api_key_hint: Mapped[str | None] = mapped_column(String(16))  # "…abcd", shown by the API
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class RouteRow(Base):
    """A routing rule written through the admin API; `body` is its RouteSettings."""

    __tablename__ = "routes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pattern: Mapped[str] = mapped_column(String(256))
    match: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class AdminChangeRow(Base):
    """Who changed what, when: one row per admin write (never the secret itself)."""

    __tablename__ = "admin_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))  # e.g. provider.create
    target: Mapped[str] = mapped_column(String(256))
    detail: Mapped[dict[str, Any]] = mapped_column()


class UserRow(Base):
    """An account. `token_version` is bumped on every change of role, state or password: a
    session token carrying an older one is refused on its next request."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16), index=True)  # admin | user | pending
    disabled: Mapped[bool] = mapped_column(default=False)
    token_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class ApiKeyRow(Base):
    """A program's key: only its keyed hash (HMAC-SHA256) and a visible prefix are stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[dict[str, Any]] = mapped_column()  # models, rpm, tpm, local_only
    expires_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class ServerSecretRow(Base):
    """Secrets of the server itself (the key of session tokens and of API-key hashes), kept
    encrypted under the master keyring, so every instance sharing the database shares them
    and `secrets rotate` re-encrypts them with the rest."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class AuditRequestRow(Base):
    """One client request on the generating APIs (the audit log: audit/). Small on purpose:
    no message text unless the operator opts in (--audit-prompts), times as offsets from the
    arrival, the attempts only when a target failed. Indexes serve the viewer's filters, each
    newest first (GET /admin/requests)."""

    __tablename__ = "audit_requests"
    __table_args__ = (
        Index("ix_audit_requests_at", "at"),
        Index("ix_audit_requests_model_at", "model", "at"),
        Index("ix_audit_requests_served_model_at", "served_model", "at"),
        Index("ix_audit_requests_backend_at", "backend", "at"),
        Index("ix_audit_requests_status_at", "status", "at"),
        Index("ix_audit_requests_user_id_at", "user_id", "at"),
        Index("ix_audit_requests_key_id_at", "key_id", "at"),
        Index("ix_audit_requests_request_id", "request_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(String(128))  # as echoed in x-request-id
    at: Mapped[datetime] = mapped_column(Timestamp())  # arrival
    ttft_ms: Mapped[int | None] = mapped_column(Integer)  # first token, after arrival
    latency_ms: Mapped[int | None] = mapped_column(Integer)  # end of the answer, after arrival
    api: Mapped[str] = mapped_column(String(32))  # openai.chat, anthropic.messages, ...
    model: Mapped[str | None] = mapped_column(String(256))  # as requested
    served_model: Mapped[str | None] = mapped_column(String(256))  # as the backend was asked
    rule: Mapped[str | None] = mapped_column(String(256))  # the routing rule's pattern
    backend_type: Mapped[str | None] = mapped_column(String(24))  # local, openai, anthropic, ...
    backend: Mapped[str | None] = mapped_column(String(64))  # provider name ("local": the pool)
    # [[target key, failure class, status], ...]: the targets passed over; NULL when none
    attempts: Mapped[list[Any] | None] = mapped_column(JSON(none_as_null=True))
    status: Mapped[int] = mapped_column(SmallInteger)  # 499: the client went away
    error: Mapped[str | None] = mapped_column(String(64))  # the error's code or type
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    stream: Mapped[bool] = mapped_column(Boolean)
    user_id: Mapped[str | None] = mapped_column(String(128))
    key_id: Mapped[str | None] = mapped_column(String(128))
    left_machine: Mapped[bool] = mapped_column(Boolean)  # the request was sent off this machine
    prompt: Mapped[str | None] = mapped_column(Text)  # --audit-prompts: the last user message


class LiveSettingRow(Base):
    """A setting changed through the admin API while the server runs (the pool's limits),
    kept across restarts beside the startup flags it overrides; `value` is its JSON body."""

    __tablename__ = "live_settings"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)  # e.g. pool.limits
    value: Mapped[dict[str, Any]] = mapped_column()
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)
