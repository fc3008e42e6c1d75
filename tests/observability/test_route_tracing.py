"""Spans and routing metrics through the real GenerationService (fake providers, no HTTP):
the request span and its children, attempts and failover, aborts, the fallback counter,
backend_up, an incoming traceparent, and tracing off by default."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlx_manager.config import ProviderSettings, RouteSettings, TracingConfig, load_settings
from mlx_manager.errors import ApiError, ErrorInfo, InternalError, InvalidRequest, RateLimited
from mlx_manager.observability.otel import Tracing
from mlx_manager.observability.route_metrics import BackendCollector, fallbacks_counter
from mlx_manager.observability.route_telemetry import RouteTelemetry
from mlx_manager.observability.tracing import start_tracing, traces_endpoint, tracing_enabled
from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.failover import Cooldowns
from mlx_manager.routing.rules import RuleSet
from mlx_manager.routing.service import GenerationService
from mlx_manager.security.principal import ANONYMOUS
from mlx_manager.types import (
    ChatMessage,
    FinishReason,
    GenerateRequest,
    GenerationEvent,
    SamplingParams,
    Timings,
    Usage,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class FakeStream:
    prompt_tokens = 4

    def __init__(self, events: list[GenerationEvent]) -> None:
        self.events = events
        self.aborted = False

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[GenerationEvent]:
        for event in self.events:
            await asyncio.sleep(0.002)
            yield event

    def abort(self) -> None:
        self.aborted = True


class FakeHttp:
    """What the spans read of an upstream (HttpUpstream's settings; no client: no HTTP)."""

    def __init__(self, name: str) -> None:
        self.settings = ProviderSettings(
            name=name, kind="openai_compatible", base_url="http://127.0.0.1:9/v1"
        )
        self.left_machine = False


class Fake:
    """A provider: answers, raises `error` at submit, or sends `event_error` first. The local
    one's last event carries the engine's timings, as the real engine's does."""

    def __init__(
        self,
        name: str,
        error: ApiError | None = None,
        event_error: ApiError | None = None,
        events: int = 3,
    ) -> None:
        self.name = name
        self.error, self.event_error, self.count = error, event_error, events
        self.streams: list[FakeStream] = []
        if name != "local":
            self.http = FakeHttp(name)

    async def submit(self, request: GenerateRequest) -> FakeStream:
        if self.error is not None:
            raise self.error
        if self.event_error is not None:
            info = ErrorInfo.of(self.event_error)
            failed = GenerationEvent(
                request.request_id, finish_reason=FinishReason.ERROR, error=info
            )
            self.streams.append(FakeStream([failed]))
            return self.streams[-1]
        queued = time.monotonic()
        await asyncio.sleep(0.01)
        words = [GenerationEvent(request.request_id, text="w", token_ids=(1,))] * (self.count - 1)
        last = GenerationEvent(
            request.request_id,
            finish_reason=FinishReason.STOP,
            usage=Usage(4, self.count - 1, cached_tokens=2),
            timings=Timings(queued, queued + 0.001, queued + 0.003, queued + 0.006)
            if self.name == "local"
            else None,
        )
        self.streams.append(FakeStream([*words, last]))
        return self.streams[-1]

    async def count_tokens(self, request: GenerateRequest) -> int:
        return 4


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def make_service(
    exporter: InMemorySpanExporter,
    registry: CollectorRegistry,
    local: Fake,
    *upstreams: Fake,
    cooldowns: Cooldowns | None = None,
) -> GenerationService:
    rules = [
        RouteSettings.model_validate(
            {
                "pattern": "chain",
                "match": "exact",
                "targets": [{"provider": u.name, "model": f"{u.name}-model"} for u in upstreams],
            }
        )
        for _ in range(1 if upstreams else 0)
    ]
    telemetry = RouteTelemetry(fallbacks_counter(registry), Tracing.with_exporter(exporter))
    return GenerationService(
        local,
        AliasTable(),
        {u.name: u for u in upstreams if u.name != "local"},
        RuleSet.build(rules, AliasTable()),
        cooldowns or Cooldowns(3, 60.0),
        telemetry=telemetry,
    )


def chat(model: str) -> GenerateRequest:
    return GenerateRequest(
        "req-1",
        model,
        SamplingParams(max_tokens=8, temperature=0.0),
        messages=(ChatMessage("user", "hi"),),
    )


async def consume(service: GenerationService, model: str) -> list[GenerationEvent]:
    stream = await service.submit(chat(model), ANONYMOUS)
    return [event async for event in stream]


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    spans: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        spans.setdefault(span.name, []).append(span)
    return spans


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def fallbacks(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name == "mlx_manager:route_fallbacks_total":
                out[(sample.labels["provider"], sample.labels["reason"])] = sample.value
    return out


def test_a_local_request_is_one_server_span_with_route_attempt_and_engine_phases(
    exporter: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    service = make_service(exporter, registry, Fake("local"))
    events = asyncio.run(consume(service, "small"))
    assert events[-1].finish_reason is FinishReason.STOP

    spans = by_name(exporter)
    assert set(spans) == {
        "chat small",
        "route",
        "attempt local",
        "prepare",
        "queue",
        "prefill",
        "decode",
    }
    (request,) = spans["chat small"]
    (attempt,) = spans["attempt local"]
    assert request.kind is SpanKind.SERVER and request.parent is None
    assert attrs(request) | {"gen_ai.response.time_to_first_chunk": 0} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "mlx_manager",
        "gen_ai.request.model": "small",
        "gen_ai.request.max_tokens": 8,
        "gen_ai.request.temperature": 0.0,
        "gen_ai.request.top_p": 1.0,
        "gen_ai.response.model": "small",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 4,
        "gen_ai.usage.output_tokens": 2,
        "gen_ai.usage.cache_read.input_tokens": 2,
        "gen_ai.response.time_to_first_chunk": 0,
        "mlx_manager.request_id": "req-1",
        "mlx_manager.backend": "local/small",
        "mlx_manager.attempts": 1,
    }
    assert attrs(request)["gen_ai.response.time_to_first_chunk"] > 0
    assert attrs(spans["route"][0]) == {
        "mlx_manager.route.match": "none",
        "mlx_manager.route.chain": ("local/small",),
    }
    assert parent_of(spans["route"][0]) == request.context.span_id
    assert attempt.kind is SpanKind.INTERNAL
    assert parent_of(attempt) == request.context.span_id
    assert attrs(attempt)["mlx_manager.provider"] == "local"
    assert attrs(attempt)["gen_ai.request.model"] == "small"
    assert "gen_ai.usage.input_tokens" not in attrs(attempt)  # usage once per request

    # The engine's phases: children of the attempt, in order, within it.
    phases = [spans[name][0] for name in ("prepare", "queue", "prefill", "decode")]
    assert all(parent_of(p) == attempt.context.span_id for p in phases)
    assert all(p.start_time <= p.end_time for p in phases)  # type: ignore[operator]
    for before, after in itertools.pairwise(phases):
        assert before.end_time == after.start_time
    assert attempt.start_time <= phases[0].start_time  # type: ignore[operator]
    assert phases[-1].end_time <= attempt.end_time  # type: ignore[operator]
    assert attrs(spans["prefill"][0]) == {
        "mlx_manager.prompt_tokens": 4,
        "mlx_manager.cached_tokens": 2,
    }
    assert attrs(spans["decode"][0]) == {"mlx_manager.completion_tokens": 2}
    assert request.end_time >= attempt.end_time  # type: ignore[operator]
    assert fallbacks(registry) == {}


def test_failover_makes_one_attempt_span_each_the_failed_marked_with_its_class(
    exporter: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    broken = Fake("broken", InternalError("upstream answered 500"))
    limited = Fake("limited", event_error=RateLimited("slow down"))
    good = Fake("good")
    service = make_service(exporter, registry, Fake("local"), broken, limited, good)
    events = asyncio.run(consume(service, "chain"))
    assert "".join(e.text for e in events) == "ww"

    spans = by_name(exporter)
    (request,) = spans["chat chain"]
    attempts = sorted(
        (s for name, group in spans.items() if name.startswith("attempt ") for s in group),
        key=lambda s: attrs(s)["mlx_manager.attempt"],
    )
    assert [s.name for s in attempts] == ["attempt broken", "attempt limited", "attempt good"]
    assert all(parent_of(s) == request.context.span_id for s in attempts)
    assert all(s.kind is SpanKind.CLIENT for s in attempts)
    first, second, third = (attrs(s) for s in attempts)
    assert first["error.type"] == first["mlx_manager.failure_class"] == "server"
    assert second["error.type"] == second["mlx_manager.failure_class"] == "rate_limited"
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attempts[1].status.status_code is StatusCode.ERROR
    assert "error.type" not in third and attempts[2].status.status_code is StatusCode.UNSET
    assert third["gen_ai.provider.name"] == "openai_compatible"
    assert third["server.address"] == "127.0.0.1" and third["server.port"] == 9
    assert third["gen_ai.request.model"] == "good-model"

    answer = attrs(request)
    assert answer["mlx_manager.backend"] == "good/good-model"
    assert answer["gen_ai.response.model"] == "good-model"
    assert answer["mlx_manager.attempts"] == 3
    assert answer["gen_ai.request.model"] == "chain"
    assert request.status.status_code is StatusCode.UNSET
    assert [
        (e.name, dict(e.attributes or {})["mlx_manager.failure_class"]) for e in request.events
    ] == [("mlx_manager.fallback", "server"), ("mlx_manager.fallback", "rate_limited")]
    assert attrs(spans["route"][0]) == {
        "mlx_manager.route.match": "exact",
        "mlx_manager.route.rule": "chain",
        "mlx_manager.route.chain": (
            "broken/broken-model",
            "limited/limited-model",
            "good/good-model",
        ),
    }
    assert fallbacks(registry) == {("broken", "server"): 1.0, ("limited", "rate_limited"): 1.0}


def test_a_chain_with_no_answer_ends_the_request_span_with_the_last_error(
    exporter: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    service = make_service(
        exporter,
        registry,
        Fake("local"),
        Fake("one", InternalError("x")),
        Fake("two", RateLimited("y")),
    )
    with pytest.raises(RateLimited):
        asyncio.run(consume(service, "chain"))
    (request,) = by_name(exporter)["chat chain"]
    assert request.status.status_code is StatusCode.ERROR
    assert attrs(request)["error.type"] == "rate_limited"
    assert attrs(request)["mlx_manager.attempts"] == 2
    # The last target's failure is the answer, not a fallback.
    assert fallbacks(registry) == {("one", "server"): 1.0}


def test_a_caller_error_is_no_fallback(
    exporter: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    service = make_service(
        exporter, registry, Fake("local"), Fake("picky", InvalidRequest("bad")), Fake("good")
    )
    with pytest.raises(InvalidRequest):
        asyncio.run(consume(service, "chain"))
    spans = by_name(exporter)
    assert attrs(spans["attempt picky"][0])["error.type"] == "caller"
    assert attrs(spans["chat chain"][0])["error.type"] == "caller"
    assert "attempt good" not in spans
    assert fallbacks(registry) == {}


def test_a_cooling_target_is_an_event_and_backend_up_reads_the_cooldowns(
    exporter: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    now = [1000.0]
    cooldowns = Cooldowns(1, 30.0, clock=lambda: now[0])
    broken, good = Fake("broken", InternalError("x")), Fake("good")
    service = make_service(exporter, registry, Fake("local"), broken, good, cooldowns=cooldowns)
    registry.register(BackendCollector(service))

    def up() -> dict[str, float]:
        text = generate_latest(registry).decode()
        return {
            s.labels["provider"]: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "mlx_manager:backend_up"
        }

    assert up() == {"local": 1.0, "broken": 1.0, "good": 1.0}
    asyncio.run(consume(service, "chain"))  # broken fails once: cools down (1 failure)
    assert up() == {"local": 1.0, "broken": 0.0, "good": 1.0}
    exporter.clear()
    asyncio.run(consume(service, "chain"))  # skipped untried
    (request,) = by_name(exporter)["chat chain"]
    assert [dict(e.attributes or {})["mlx_manager.failure_class"] for e in request.events] == [
        "cooldown"
    ]
    assert "attempt broken" not in by_name(exporter)
    assert fallbacks(registry) == {("broken", "server"): 1.0}  # a skip is not counted
    now[0] += 31
    assert up() == {"local": 1.0, "broken": 1.0, "good": 1.0}


def test_an_abort_ends_the_attempt_and_the_request(
    exporter: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    local = Fake("local", events=50)
    service = make_service(exporter, registry, local)

    async def main() -> None:
        stream = await service.submit(chat("small"), ANONYMOUS)
        async for _ in stream:
            break
        stream.abort()

    asyncio.run(main())
    spans = by_name(exporter)
    assert attrs(spans["attempt local"][0])["gen_ai.response.finish_reasons"] == ("abort",)
    assert attrs(spans["chat small"][0])["gen_ai.response.finish_reasons"] == ("abort",)
    assert local.streams[0].aborted


def test_an_incoming_traceparent_makes_the_request_span_its_child(
    exporter: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    service = make_service(exporter, registry, Fake("local"))
    incoming = TraceContextTextMapPropagator().extract(
        {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    )

    async def main() -> None:
        token = otel_context.attach(incoming)  # what TraceContextMiddleware does
        try:
            await consume(service, "small")
        finally:
            otel_context.detach(token)

    asyncio.run(main())
    spans = exporter.get_finished_spans()
    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE_ID}
    (request,) = by_name(exporter)["chat small"]
    assert request.parent is not None and request.parent.is_remote
    assert format(request.parent.span_id, "016x") == PARENT_ID


def test_the_middleware_takes_the_traceparent_from_the_headers(
    exporter: InMemorySpanExporter, registry: CollectorRegistry
) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from mlx_manager.observability.trace_context import TraceContextMiddleware

    service = make_service(exporter, registry, Fake("local"))

    async def endpoint(request: Request) -> PlainTextResponse:
        events = await consume(service, "small")
        return PlainTextResponse("".join(e.text for e in events))

    app = Starlette(routes=[Route("/", endpoint)])
    app.add_middleware(TraceContextMiddleware)
    with TestClient(app) as client:
        client.get("/", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        client.get("/")  # none: a trace of its own
    first, second = by_name(exporter)["chat small"]
    assert format(first.context.trace_id, "032x") == TRACE_ID
    assert format(first.parent.span_id, "016x") == PARENT_ID  # type: ignore[union-attr]
    assert second.parent is None and format(second.context.trace_id, "032x") != TRACE_ID


def test_tracing_is_on_only_when_configured() -> None:
    off = TracingConfig()
    assert not tracing_enabled(off, {}) and start_tracing(off, {}) is None
    config = TracingConfig(endpoint="http://collector:4318")
    assert traces_endpoint(config, {}) == "http://collector:4318/v1/traces"
    assert traces_endpoint(TracingConfig(endpoint="http://c:4318/v1/traces/"), {}) == (
        "http://c:4318/v1/traces/"
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318/"}
    assert traces_endpoint(off, env) == "http://env:4318/v1/traces"
    env_traces = {**env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/x"}
    assert traces_endpoint(off, env_traces) == "http://t:1/x"
    assert traces_endpoint(config, env_traces) == "http://collector:4318/v1/traces"
    assert not tracing_enabled(config, {"OTEL_SDK_DISABLED": "true"})
    tracing = start_tracing(off, {**env, "OTEL_SERVICE_NAME": "edge-1"})
    assert tracing is not None
    try:
        resource = tracing.provider.resource  # type: ignore[attr-defined]
        assert resource.attributes["service.name"] == "edge-1"
    finally:
        tracing.shutdown()


@pytest.mark.skipif(
    importlib.util.find_spec("logfire") is not None, reason="logfire is installed here"
)
def test_logfire_without_the_package_is_a_clear_configuration_error() -> None:
    with pytest.raises(ValueError, match=r"--logfire needs the logfire package \(pip install"):
        load_settings({"logfire": True})


def test_an_otel_endpoint_must_be_a_url() -> None:
    with pytest.raises(ValueError, match="otel_endpoint"):
        load_settings({"otel_endpoint": "collector:4318"})
    assert load_settings({"otel_endpoint": "http://c:4318"}).tracing().endpoint == "http://c:4318"


def test_off_by_default_the_sdk_is_never_imported(tmp_path: Any) -> None:
    """A runtime and app built with no tracing settings: no tracer provider, no SDK import
    (FastAPI itself imports the OpenTelemetry API; the SDK is ours to import or not)."""
    code = (
        "import sys\n"
        "from mlx_manager.config import load_settings\n"
        "from mlx_manager.api.app import create_app\n"
        "from mlx_manager.runtime import Runtime\n"
        "settings = load_settings({})\n"
        "app = create_app(settings)\n"
        "runtime = Runtime(settings)\n"
        "assert runtime.tracing is None\n"
        "assert not any(m.cls.__name__ == 'TraceContextMiddleware' for m in app.user_middleware)\n"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry.sdk')]\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MLX_MANAGER_OTEL"))}
    env["MLX_MANAGER_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.fixture(autouse=True)
def _no_leaked_context() -> Iterator[None]:
    before = otel_context.get_current()
    yield
    assert otel_context.get_current() == before
