"""An audit record as the request fills it in: the seam's hook, the watch on the answer,
and the row it becomes (status of an abort or of an error event, identity, widths)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from mlx_manager.audit.identity import identity
from mlx_manager.audit.record import (
    CLIENT_CLOSED,
    CURRENT,
    PROMPT_BYTES,
    STATE_KEY,
    AuditRecord,
    watch,
)
from mlx_manager.audit.route_note import RouteAuditor
from mlx_manager.errors import ErrorInfo, Overloaded, UpstreamUnavailable
from mlx_manager.routing.rules import Route, Rule, Target
from mlx_manager.security.principal import ANONYMOUS, STATIC_KEY, Principal, Role
from mlx_manager.types import (
    ChatMessage,
    FinishReason,
    GenerateRequest,
    GenerationEvent,
    SamplingParams,
    Usage,
)


def record(api: str = "openai.chat") -> AuditRecord:
    return AuditRecord("req-1", api, datetime.now(UTC), time.monotonic())


def request(*messages: tuple[str, str]) -> GenerateRequest:
    return GenerateRequest(
        "req-1",
        "gpt-4o",
        SamplingParams(),
        messages=tuple(ChatMessage(role, text) for role, text in messages),
    )


class _Upstream:
    """A provider as the seam hands it over: an upstream's settings say its kind."""

    class http:
        class settings:
            kind = "anthropic"


def test_the_route_hook_notes_rule_backends_attempts_and_left_machine() -> None:
    audit = RouteAuditor(prompts=False)
    assert audit.begin(request(("user", "hi")), Route("x", None, ())) is None  # no record
    rec = record()
    token = CURRENT.set(rec)
    try:
        rule = Rule("gpt-", "prefix", (("cloud", "claude"), ("local", "m")))
        note = audit.begin(request(("user", "hi")), Route("gpt-4o", rule, rule.chain("gpt-4o")))
    finally:
        CURRENT.reset(token)
    assert note is not None
    note.trying(Target("cloud", "claude"), _Upstream(), True)  # type: ignore[arg-type]
    note.failed(Target("cloud", "claude"), "overloaded", Overloaded("busy"))
    note.failed(Target("other", "x"), "cooldown", None)
    note.trying(Target("local", "m"), object(), False)  # type: ignore[arg-type]
    row = rec.row(200, ANONYMOUS)
    assert row["model"] == "gpt-4o" and row["rule"] == "gpt-"
    assert (row["backend"], row["backend_type"], row["served_model"]) == ("local", "local", "m")
    assert row["attempts"] == [["cloud/claude", "overloaded", 503], ["other/x", "cooldown", None]]
    assert row["left_machine"] is True  # a target tried before sent the prompt away
    assert row["prompt"] is None  # not unless the operator opts in


def test_prompts_only_when_opted_in_and_cut_to_2_kb() -> None:
    rec = record()
    token = CURRENT.set(rec)
    try:
        long = "é" * PROMPT_BYTES  # 2 bytes each
        RouteAuditor(prompts=True).begin(
            request(("system", "be brief"), ("user", long), ("assistant", "ok"), ("user", "last")),
            Route("m", None, ()),
        )
        assert rec.prompt == "last"
        rec2 = record()
        CURRENT.set(rec2)
        RouteAuditor(prompts=True).begin(request(("user", long)), Route("m", None, ()))
    finally:
        CURRENT.reset(token)
    assert rec2.prompt is not None and len(rec2.prompt.encode()) <= PROMPT_BYTES
    assert rec2.prompt == "é" * (PROMPT_BYTES // 2)


class _Stream:
    def __init__(self, events: list[GenerationEvent]) -> None:
        self._events = events
        self.closed = False
        self.aborted = False

    @property
    def prompt_tokens(self) -> int:
        return 7

    def abort(self) -> None:
        self.aborted = True

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[GenerationEvent]:
        try:
            for event in self._events:
                await asyncio.sleep(0.01)
                yield event
        finally:
            self.closed = True


def _scope(rec: AuditRecord) -> dict[str, Any]:
    return {"state": {STATE_KEY: rec}}


def test_the_watch_notes_first_token_tokens_and_usage() -> None:
    rec = record()
    events = [
        GenerationEvent("r", text="Hel", token_ids=(1, 2)),
        GenerationEvent("r", text="lo", token_ids=(3,)),
        GenerationEvent("r", finish_reason=FinishReason.STOP, usage=Usage(7, 3, cached_tokens=4)),
    ]

    async def main() -> None:
        stream = watch(_scope(rec), _Stream(events), True)
        assert stream.prompt_tokens == 7 and rec.prompt_tokens == 7 and rec.stream is True
        seen = [event async for event in stream]
        assert seen == events

    asyncio.run(main())
    assert rec.ttft_ms is not None and rec.ttft_ms >= 5
    assert (rec.prompt_tokens, rec.completion_tokens, rec.cached_tokens) == (7, 3, 4)
    assert rec.ended and rec.row(200, ANONYMOUS)["status"] == 200


def test_an_unaudited_request_is_not_watched() -> None:
    stream = _Stream([])
    assert watch({}, stream, False) is stream


def test_leaving_early_closes_the_inner_stream_and_counts_what_streamed() -> None:
    rec = record()
    inner = _Stream([GenerationEvent("r", text="a", token_ids=(1,))] * 5)

    async def main() -> None:
        stream = watch(_scope(rec), inner, True)
        iterator = aiter(stream)
        await anext(iterator)
        await anext(iterator)
        await iterator.aclose()  # type: ignore[attr-defined]

    asyncio.run(main())
    assert inner.closed
    assert rec.completion_tokens == 2 and not rec.ended
    rec.client_gone = True
    row = rec.row(200, ANONYMOUS)  # the 200 went out; the client left before the end
    assert row["status"] == CLIENT_CLOSED and row["error"] is None


def test_an_error_event_sets_status_and_code_in_the_callers_dialect() -> None:
    error = ErrorInfo.of(UpstreamUnavailable("upstream down: secret text"))
    for api, status in (("openai.chat", 502), ("anthropic.messages", 502)):
        rec = record(api)
        rec.observe(GenerationEvent("r", finish_reason=FinishReason.ERROR, error=error), 0)
        row = rec.row(200, ANONYMOUS)  # a stream: the 200 went out first
        assert (row["status"], row["error"]) == (status, "upstream_unavailable")
        assert rec.ttft_ms is None  # an error is no first token
    busy = ErrorInfo.of(Overloaded("busy"))
    rec = record("anthropic.messages")
    rec.observe(GenerationEvent("r", finish_reason=FinishReason.ERROR, error=busy), 0)
    assert rec.row(200, ANONYMOUS)["status"] == 529  # Anthropic's overloaded
    rec = record()
    rec.observe(GenerationEvent("r", finish_reason=FinishReason.ERROR, error=busy), 0)
    assert rec.row(503, ANONYMOUS)["status"] == 503  # whole reply: the HTTP status says


def test_statuses_without_an_answer() -> None:
    rec = record()
    assert rec.row(None, ANONYMOUS)["status"] == 500  # no response was started
    rec.client_gone = True
    assert rec.row(CLIENT_CLOSED, ANONYMOUS)["status"] == CLIENT_CLOSED


def test_served_model_is_kept_only_where_it_differs_and_values_are_cut() -> None:
    rec = record()
    rec.routed("m" * 300, None)
    rec.served_model = "m" * 300
    row = rec.row(200, Principal("u" * 200, Role.USER))
    assert row["served_model"] is None  # the requested name, as it was
    assert len(row["model"]) == 256 and len(row["user_id"]) == 128
    rec.served_model = "other"
    assert rec.row(200, ANONYMOUS)["served_model"] == "other"


def test_identity_reads_the_principal_in_one_place() -> None:
    assert identity(None) == (None, None)
    assert identity(ANONYMOUS) == ("anonymous", None)
    assert identity(STATIC_KEY) == ("static-key", None)

    class WithAccounts:  # what accounts give the principal: ids
        subject = "ann"
        user_id = 12
        key_id: int | None = 9

    assert identity(WithAccounts()) == ("12", "9")  # type: ignore[arg-type]
    session = WithAccounts()
    session.key_id = None  # signed in, no key
    assert identity(session) == ("12", None)  # type: ignore[arg-type]
