"""Whether tracing is on, and starting it.

Off unless an OTLP endpoint is configured (`--otel-endpoint`, or the standard
OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or `--logfire` is set;
OTEL_SDK_DISABLED=true turns it off whatever else is set. This module imports nothing of
OpenTelemetry: with tracing off, the SDK is never imported and a request pays nothing for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from mlx_manager.config import TracingConfig

if TYPE_CHECKING:
    from mlx_manager.observability.otel import Tracing

TRACES_PATH = "/v1/traces"
DEFAULT_SERVICE = "mlx-manager"  # --otel-service-name's default: OTEL_SERVICE_NAME may override


def traces_endpoint(config: TracingConfig, environ: Mapping[str, str] = os.environ) -> str | None:
    """The URL spans are posted to: --otel-endpoint's (a base URL, as the standard variable's,
    or already ending in /v1/traces), else the standard variables', else None."""
    if config.endpoint:
        return _traces_url(config.endpoint)
    if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]  # the whole URL, by the spec
    if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return _traces_url(environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
    return None


def tracing_enabled(config: TracingConfig, environ: Mapping[str, str] = os.environ) -> bool:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return config.logfire or traces_endpoint(config, environ) is not None


def start_tracing(config: TracingConfig, environ: Mapping[str, str] = os.environ) -> Tracing | None:
    """A tracer provider exporting this server's spans, or None when tracing is off."""
    if not tracing_enabled(config, environ):
        return None
    from mlx_manager.observability.otel import Tracing

    service = environ.get("OTEL_SERVICE_NAME") if config.service_name == DEFAULT_SERVICE else None
    return Tracing.start(
        service or config.service_name, traces_endpoint(config, environ), config.logfire
    )


def _traces_url(base: str) -> str:
    path = urlsplit(base).path.rstrip("/")
    if path.endswith(TRACES_PATH):
        return base
    return base.rstrip("/") + TRACES_PATH
