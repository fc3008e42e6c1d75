"""Model downloads from the Hugging Face hub (admin only), into the standard HF cache.

- `POST /admin/models/downloads` `{"repo_id": "owner/name", "revision": "main"}`: start (or
  resume) a download; 202 with its state. The hub is asked for the file list first, so an
  unknown repo is a 404, a repo without MLX weights a 400, and an unreachable hub a 502 (504
  on a timeout) with the cause in words.
- `GET /admin/models/downloads`: every download of this machine, newest first.
- `GET /admin/models/downloads/{id}`: one download: state (queued, downloading, done, failed,
  cancelled, interrupted), bytes done/total, rate, ETA, and each file.
- `GET /admin/models/downloads/{id}/events`: SSE `progress` events with that state whenever it
  changes, until the download ends (the last event carries the end state).
- `POST /admin/models/downloads/{id}/cancel`; `POST /admin/models/downloads/{id}/resume`
  (a failed, cancelled or interrupted one; the files already fetched are not fetched again).
- `DELETE /admin/models/downloads/{id}`: forget a download that is not running (its files
  stay in the cache, and a finished model stays served until the restart).
A finished download is served by its repo id (`/v1/models`, `/v1/chat/completions`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse, ServerSentEvent

from mlx_manager.api.auth import Admin, require_admin
from mlx_manager.api.deps import runtime_of
from mlx_manager.api.streaming import PING_SECONDS
from mlx_manager.downloads.manager import DownloadManager

router = APIRouter(prefix="/admin/models/downloads", dependencies=[Depends(require_admin)])


class StartDownload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo_id: str = Field(max_length=200)
    revision: str = Field("main", max_length=200)


def _downloads(request: Request) -> DownloadManager:
    return runtime_of(request).downloads


@router.post("", status_code=202)
async def start(body: StartDownload, request: Request, admin: Admin) -> dict[str, Any]:
    downloads = _downloads(request)
    record = await downloads.start(body.repo_id, body.revision)
    await runtime_of(request).accounts.record(admin, "model.download", body.repo_id)
    return downloads.view(record)


@router.get("")
async def list_downloads(request: Request) -> dict[str, Any]:
    downloads = _downloads(request)
    return {"data": [downloads.view(r) for r in downloads.records()]}


@router.get("/{download_id}")
async def one(download_id: str, request: Request) -> dict[str, Any]:
    downloads = _downloads(request)
    return downloads.view(downloads.get(download_id))


@router.get("/{download_id}/events")
async def events(download_id: str, request: Request) -> EventSourceResponse:
    downloads = _downloads(request)
    downloads.get(download_id)  # a 404 before the stream starts

    async def frames() -> AsyncIterator[ServerSentEvent]:
        async for body in downloads.watch(download_id):
            yield ServerSentEvent(json.dumps(body), event="progress")

    return EventSourceResponse(frames(), ping=PING_SECONDS)


@router.post("/{download_id}/cancel")
async def cancel(download_id: str, request: Request, admin: Admin) -> dict[str, Any]:
    downloads = _downloads(request)
    record = await downloads.cancel(download_id)
    await runtime_of(request).accounts.record(admin, "model.download.cancel", record.repo_id)
    return downloads.view(record)


@router.post("/{download_id}/resume", status_code=202)
async def resume(download_id: str, request: Request, admin: Admin) -> dict[str, Any]:
    downloads = _downloads(request)
    record = await downloads.resume(download_id)
    await runtime_of(request).accounts.record(admin, "model.download", record.repo_id)
    return downloads.view(record)


@router.delete("/{download_id}")
async def forget(download_id: str, request: Request) -> JSONResponse:
    await _downloads(request).forget(download_id)
    return JSONResponse({"id": download_id, "deleted": True})
