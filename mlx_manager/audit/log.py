"""The audit log as the runtime holds it: the writer, retention and the seam's hook."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from mlx_manager.audit.route_note import RouteAuditor
from mlx_manager.audit.writer import AuditWriter, Retention, dropped_counter
from mlx_manager.config import AuditConfig
from mlx_manager.store.database import Database


class AuditLog:
    def __init__(self, config: AuditConfig, registry: CollectorRegistry) -> None:
        self.enabled = config.enabled
        self.writer = AuditWriter(config.flush_ms / 1000, dropped_counter(registry))
        self.retention = Retention(config.retention_days)
        self.routes = RouteAuditor(prompts=config.prompts)

    def sink(self) -> AuditWriter | None:
        """Where finished rows go; None when the audit log is off."""
        return self.writer if self.enabled else None

    def start(self, database: Database) -> None:
        """Write rows to `database` and keep its retention (retention runs with the audit
        log off too: rows written earlier still age out)."""
        if self.enabled:
            self.writer.start(database)
        self.retention.start(database)

    async def close(self) -> None:
        await self.retention.close()
        await self.writer.close()
