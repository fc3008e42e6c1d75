"""Tracing end to end over real HTTP, exported as OTLP/HTTP to a tiny local collector.

`back` serves SmolLM2 with tracing on; `front` (no local model, tracing on) routes a chain
[a fake upstream answering 500, back]. A local request to back, sent with a traceparent,
gives its server span (a child of the caller's), route, attempt and the engine's phases;
a request through front gives two attempt spans (the first marked `server`), the upstream
call's client span, and back's spans in the same trace, under that client span: the
traceparent reached the upstream and a second MLX Manager continued the trace.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import MODEL
from tests.fixtures.fake_upstream import FakeUpstream
from tests.fixtures.otlp_collector import OtlpCollector, Span
from tests.fixtures.server import ServerProcess

# Spans leave in batches: a short delay keeps the test quick.
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
PHASES = ("prepare", "queue", "prefill", "decode")


@pytest.fixture(scope="module")
def collector() -> Iterator[OtlpCollector]:
    running = OtlpCollector().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def back(
    collector: OtlpCollector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        "--otel-endpoint",
        collector.base_url,
        "--otel-service-name",
        "back",
        env=FAST_EXPORT,
        log_dir=tmp_path_factory.mktemp("traced-back"),
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def front(
    collector: OtlpCollector,
    fake_upstream: FakeUpstream,
    back: ServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("traced-front")
    config = {
        "providers": [
            {
                "name": "broken",
                "kind": "openai_compatible",
                "base_url": f"{fake_upstream.base_url}/500",
            },
            {"name": "back", "kind": "openai_compatible", "base_url": f"{back.base_url}/v1"},
        ],
        "routes": [
            {
                "pattern": "via-back",
                "match": "exact",
                "targets": [
                    {"provider": "broken", "model": "m"},
                    {"provider": "back", "model": MODEL},
                ],
            }
        ],
        "failover_cooldown_failures": 100,  # every request tries broken first
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    empty = root / "models"
    empty.mkdir()
    process = ServerProcess(
        "--config",
        str(path),
        "--model-dir",
        str(empty),
        "--otel-service-name",
        "front",
        env={**FAST_EXPORT, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.base_url},  # the standard
        log_dir=root,
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent_id, f"00-{trace_id}-{parent_id}-01"


def one(spans: list[Span], service: str, name: str) -> Span:
    found = [s for s in spans if s["service"] == service and s["name"] == name]
    assert len(found) == 1, (name, [(s["service"], s["name"]) for s in spans])
    return found[0]


def children(spans: list[Span], parent: Span) -> list[Span]:
    return [s for s in spans if s["parent_id"] == parent["span_id"]]


def status_of(call: Span) -> int:
    """The HTTP status of an httpx client span, under the old or the stable conventions."""
    attributes = call["attributes"]
    return int(attributes.get("http.response.status_code", attributes.get("http.status_code")))


def has(*wanted: tuple[str, str]) -> Any:
    def done(spans: list[Span]) -> bool:
        present = {(s["service"], s["name"]) for s in spans}
        return all(w in present for w in wanted)

    return done


def test_a_local_request_gives_its_span_tree_under_the_callers_span(
    back: ServerProcess, collector: OtlpCollector
) -> None:
    trace_id, parent_id, header = traceparent()
    reply = httpx.post(
        f"{back.base_url}/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Name a colour."}],
            "max_tokens": 4,
            "temperature": 0,
        },
        headers={"traceparent": header},
        timeout=120,
    )
    assert reply.status_code == 200
    usage = reply.json()["usage"]
    spans = collector.wait_for(trace_id, has(*(("back", n) for n in (f"chat {MODEL}", *PHASES))))

    request = one(spans, "back", f"chat {MODEL}")
    assert request["kind"] == "SERVER" and request["parent_id"] == parent_id
    attributes = request["attributes"]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "mlx_manager"
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.response.model"] == MODEL
    assert attributes["gen_ai.request.max_tokens"] == 4
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attributes["gen_ai.response.finish_reasons"] == (
        reply.json()["choices"][0]["finish_reason"],
    )
    assert attributes["mlx_manager.request_id"] == reply.headers["x-request-id"]
    assert attributes["mlx_manager.backend"] == f"local/{MODEL}"
    assert request["status"] == "UNSET"

    route = one(spans, "back", "route")
    attempt = one(spans, "back", "attempt local")
    assert route["parent_id"] == attempt["parent_id"] == request["span_id"]
    assert route["attributes"]["mlx_manager.route.chain"] == (f"local/{MODEL}",)
    assert attempt["kind"] == "INTERNAL"
    phases = [one(spans, "back", name) for name in PHASES]
    assert [p["parent_id"] for p in phases] == [attempt["span_id"]] * 4
    assert [p["start"] for p in phases] == sorted(p["start"] for p in phases)
    assert attempt["start"] <= phases[0]["start"] and phases[-1]["end"] <= attempt["end"]
    assert phases[2]["attributes"]["mlx_manager.prompt_tokens"] == usage["prompt_tokens"]
    assert phases[3]["attributes"]["mlx_manager.completion_tokens"] == (usage["completion_tokens"])
    assert phases[3]["end"] - phases[2]["start"] > 0  # prefill and decode took time


def test_an_upstream_request_with_failover_is_one_trace_across_both_servers(
    front: ServerProcess, back: ServerProcess, collector: OtlpCollector, fake_upstream: FakeUpstream
) -> None:
    trace_id, parent_id, header = traceparent()
    body = {
        "model": "via-back",
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 4,
        "stream": True,
    }
    with httpx.stream(
        "POST",
        f"{front.base_url}/v1/chat/completions",
        json=body,
        headers={"traceparent": header},
        timeout=120,
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["x-mlx-manager-backend"] == f"back/{MODEL}"
        lines = [line for line in reply.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[0][6:])["choices"]
    spans = collector.wait_for(
        trace_id,
        has(
            ("front", "chat via-back"),
            ("front", "attempt back"),
            ("back", f"chat {MODEL}"),
            ("back", "decode"),
        ),
    )

    request = one(spans, "front", "chat via-back")
    assert request["kind"] == "SERVER" and request["parent_id"] == parent_id
    assert request["attributes"]["mlx_manager.backend"] == f"back/{MODEL}"
    assert request["attributes"]["gen_ai.response.model"] == MODEL
    assert request["attributes"]["mlx_manager.attempts"] == 2
    assert request["attributes"]["gen_ai.usage.output_tokens"] > 0
    assert "mlx_manager.fallback" in request["events"]
    route = one(spans, "front", "route")
    assert route["attributes"]["mlx_manager.route.rule"] == "via-back"
    assert route["attributes"]["mlx_manager.route.chain"] == ("broken/m", f"back/{MODEL}")

    failed, answered = one(spans, "front", "attempt broken"), one(spans, "front", "attempt back")
    assert failed["parent_id"] == answered["parent_id"] == request["span_id"]
    assert failed["kind"] == answered["kind"] == "CLIENT"
    assert failed["status"] == "ERROR"
    assert failed["attributes"]["error.type"] == "server"
    assert failed["attributes"]["mlx_manager.failure_class"] == "server"
    assert answered["status"] == "UNSET" and "error.type" not in answered["attributes"]
    assert answered["attributes"]["gen_ai.request.model"] == MODEL
    assert answered["attributes"]["server.address"] == "127.0.0.1"

    # Each attempt's HTTP call is a client span under it (httpx instrumentation).
    (failed_call,) = children(spans, failed)
    (call,) = children(spans, answered)
    assert failed_call["kind"] == call["kind"] == "CLIENT"
    assert status_of(failed_call) == 500 and failed_call["status"] == "ERROR"
    assert status_of(call) == 200

    # The traceparent reached back: its server span is a child of front's HTTP call.
    upstream = one(spans, "back", f"chat {MODEL}")
    assert upstream["parent_id"] == call["span_id"]
    attempt = one(spans, "back", "attempt local")
    assert {s["name"] for s in children(spans, attempt)} == set(PHASES)
    assert fake_upstream.hits["500"] >= 1


def test_a_whole_answer_upstream_call_is_traced_and_continues_the_trace(
    front: ServerProcess, back: ServerProcess, collector: OtlpCollector
) -> None:
    """A non-streamed request asks its upstream for the whole answer (through the client's
    transport, which the httpx instrumentation wraps): the failover, the HTTP client spans
    and the traceparent reaching back are as for a stream."""
    trace_id, parent_id, header = traceparent()
    body = {
        "model": "via-back",
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 4,
    }
    reply = httpx.post(
        f"{front.base_url}/v1/chat/completions",
        json=body,
        headers={"traceparent": header},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-mlx-manager-backend"] == f"back/{MODEL}"
    assert reply.json()["usage"]["completion_tokens"] > 0
    spans = collector.wait_for(
        trace_id,
        has(("front", "chat via-back"), ("front", "attempt back"), ("back", f"chat {MODEL}")),
    )
    request = one(spans, "front", "chat via-back")
    assert request["parent_id"] == parent_id
    assert request["attributes"]["mlx_manager.attempts"] == 2
    assert request["attributes"]["gen_ai.usage.output_tokens"] > 0
    failed, answered = one(spans, "front", "attempt broken"), one(spans, "front", "attempt back")
    assert failed["attributes"]["error.type"] == "server"
    (failed_call,) = children(spans, failed)
    (call,) = children(spans, answered)
    assert status_of(failed_call) == 500 and status_of(call) == 200
    assert one(spans, "back", f"chat {MODEL}")["parent_id"] == call["span_id"]
