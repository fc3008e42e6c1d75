"""The audit log: one row per client request on the generating APIs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Timestamps: timestamptz on PostgreSQL, integer microseconds since the epoch on SQLite
# (store/columns.py: Timestamp). Written out here: a migration stays as it was written.
TIMESTAMP = sa.DateTime(timezone=True).with_variant(sa.BigInteger(), "sqlite")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: the rowid

INDEXES = {
    "ix_audit_requests_at": ["at"],
    "ix_audit_requests_model_at": ["model", "at"],
    "ix_audit_requests_served_model_at": ["served_model", "at"],
    "ix_audit_requests_backend_at": ["backend", "at"],
    "ix_audit_requests_status_at": ["status", "at"],
    "ix_audit_requests_user_id_at": ["user_id", "at"],
    "ix_audit_requests_key_id_at": ["key_id", "at"],
    "ix_audit_requests_request_id": ["request_id"],
}


def upgrade() -> None:
    op.create_table(
        "audit_requests",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("ttft_ms", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("api", sa.String(32), nullable=False),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("served_model", sa.String(256), nullable=True),
        sa.Column("rule", sa.String(256), nullable=True),
        sa.Column("backend_type", sa.String(24), nullable=True),
        sa.Column("backend", sa.String(64), nullable=True),
        sa.Column("attempts", sa.JSON(), nullable=True),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("error", sa.String(64), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("cached_tokens", sa.Integer(), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=True),
        sa.Column("key_id", sa.String(128), nullable=True),
        sa.Column("left_machine", sa.Boolean(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=True),
    )
    for name, columns in INDEXES.items():
        op.create_index(name, "audit_requests", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="audit_requests")
    op.drop_table("audit_requests")
