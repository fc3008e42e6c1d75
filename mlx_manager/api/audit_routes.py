"""`GET /admin/requests`: the audit log (admin only), newest first, with aggregates.

Filters: `model` (requested or served), `backend` (a provider's name or `local`), `status`
(`200`, `4xx`, `error`, `aborted`), `user`, `key`, `request_id`, `api`, `since` / `until`
(ISO 8601 arrival times; since inclusive, until exclusive). `limit` (1..500, default 50) rows
per page; `cursor` is the previous page's `next_cursor`. `aggregates` (default true) adds,
over every row the filters select (not just this page): count, errors, aborted, error rate,
p50/p95 latency and time to first token, token sums. A parameter that is not one of these,
or a bad value, is a 400 naming it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request

from mlx_manager.api.auth import require_admin
from mlx_manager.api.deps import runtime_of
from mlx_manager.audit.query import MAX_LIMIT, Cursor, RequestFilter, aggregates, page, parse_time
from mlx_manager.audit.writer import AuditWriter
from mlx_manager.errors import InvalidRequest, Overloaded

router = APIRouter(prefix="/admin/requests", dependencies=[Depends(require_admin)])

PARAMS = frozenset(
    {
        "model",
        "backend",
        "status",
        "user",
        "key",
        "request_id",
        "api",
        "since",
        "until",
        "limit",
        "cursor",
        "aggregates",
    }
)


def sink_of(app: FastAPI) -> AuditWriter | None:
    """Where the audit middleware hands finished rows (None before the runtime exists)."""
    runtime = getattr(app.state, "runtime", None)
    return runtime.audit.sink() if runtime is not None else None


Text = Annotated[str | None, Query(max_length=256)]


@router.get("")
async def list_requests(
    request: Request,
    model: Text = None,
    backend: Text = None,
    status: Text = None,
    user: Text = None,
    key: Text = None,
    request_id: Text = None,
    api: Text = None,
    since: Text = None,
    until: Text = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Text = None,
    aggregates_: Annotated[bool, Query(alias="aggregates")] = True,
) -> dict[str, Any]:
    unknown = sorted(set(request.query_params) - PARAMS)
    if unknown:
        raise InvalidRequest(
            f"unknown parameter '{unknown[0]}' (filters: {', '.join(sorted(PARAMS))})",
            param=unknown[0],
            code="unknown_parameter",
        )
    where = RequestFilter(
        model=model,
        backend=backend,
        status=status,
        user=user,
        key=key,
        request_id=request_id,
        api=api,
        since=parse_time(since, "since") if since else None,
        until=parse_time(until, "until") if until else None,
    )
    if where.since is not None and where.until is not None and where.since >= where.until:
        raise InvalidRequest("'since' must be before 'until'", param="since")
    where.clauses()  # a bad status is a 400 before any query
    after = Cursor.decode(cursor) if cursor else None
    database = runtime_of(request).database
    if database is None:
        raise Overloaded("the store is not open yet")
    data, following = await page(database, where, limit, after)
    body: dict[str, Any] = {
        "object": "list",
        "data": data,
        "has_more": following is not None,
        "next_cursor": following.encode() if following is not None else None,
    }
    if aggregates_:
        body["aggregates"] = await aggregates(database, where)
    return body
