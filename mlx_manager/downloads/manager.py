"""Downloads of models from the Hugging Face hub: start, watch, cancel, resume.

- `start(repo_id, revision)` checks the names, asks the hub for the commit and file list (a
  hub failure is the caller's 502/504/404 at once), and queues the download. One download runs
  at a time (the others wait, `queued`), each in a worker thread; the event loop only reads
  its counters. Starting a repo and revision that has a record reuses it: an active one is
  returned as it is, any other runs again, skipping the files already in the cache.
- Files go into the standard HF cache through huggingface_hub (hub.py), smallest first, so
  the config and tokenizer are there before the weights.
- `cancel` stops a download at its next chunk; the finished files stay in the cache.
- A restart leaves a running download `interrupted` (records.py): it is resumed by an explicit
  `resume` (or a new `start`), never on its own at boot, so a restarted server does not spend
  bandwidth and disk nobody asked for again, and a server started offline does not fail it.
- A finished download is handed to `on_done` (the runtime adds it to the served catalog) and
  again at every start (`finished`), so it stays servable by its id after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx_manager.downloads import hub
from mlx_manager.downloads.names import check_repo_id, check_revision
from mlx_manager.downloads.progress import FileProgress, FileState, Transfer, eta_s, percent
from mlx_manager.downloads.records import DownloadRecord, DownloadState, RecordFile
from mlx_manager.errors import ApiError, Conflict, NotFound, UpstreamUnavailable, without_paths

log = logging.getLogger(__name__)

OnDone = Callable[[str, Path], Awaitable[None]]
CANCEL_WAIT_S = 5.0  # how long `cancel` waits for the worker to stop before answering


@dataclass(slots=True)
class _Stop:
    """How a download is asked to stop (the worker thread polls `event`) and what it then
    becomes: cancelled by a caller, interrupted by shutdown."""

    event: threading.Event = field(default_factory=threading.Event)
    becomes: DownloadState = DownloadState.CANCELLED


class DownloadManager:
    def __init__(
        self,
        records: RecordFile,
        hub_timeout_s: float,
        on_done: OnDone,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._file = records
        self._timeout_s = hub_timeout_s
        self._on_done = on_done
        self._clock = clock
        self._records: dict[str, DownloadRecord] = {}
        self._transfers: dict[str, Transfer] = {}  # live counters of the running ones
        self._stops: dict[str, _Stop] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._lock = threading.Lock()  # counters shared with the worker threads
        self._save_lock = threading.Lock()
        self._starting = asyncio.Lock()  # one start at a time: no twin records
        self._slot = asyncio.Semaphore(1)  # one download at a time
        self._opened = False  # never write the file over before it was read

    async def open(self) -> None:
        """Read the records left by the last run (running ones come back interrupted)."""
        records = await asyncio.to_thread(self._file.load)
        self._records = {r.id: r for r in records}
        self._opened = True
        if any(r.state is DownloadState.INTERRUPTED for r in records):
            await asyncio.to_thread(self._save)

    def finished(self) -> list[tuple[str, Path]]:
        """(repo id, snapshot directory) of each finished download still in the cache."""
        done = [r for r in self._records.values() if r.state is DownloadState.DONE and r.path]
        return [(r.repo_id, Path(r.path)) for r in done if r.path and Path(r.path).is_dir()]

    def records(self) -> list[DownloadRecord]:
        return sorted(self._records.values(), key=lambda r: r.created_at, reverse=True)

    def get(self, download_id: str) -> DownloadRecord:
        record = self._records.get(download_id)
        if record is None:
            raise NotFound(f"no download with id '{download_id[:64]}'", code="download_not_found")
        return record

    async def start(self, repo_id: str, revision: str = "main") -> DownloadRecord:
        check_repo_id(repo_id)
        check_revision(revision)
        async with self._starting:
            record = next(
                (
                    r
                    for r in self._records.values()
                    if r.repo_id == repo_id and r.revision == revision
                ),
                None,
            )
            if record is not None and record.active:
                return record
            plan, files = await asyncio.to_thread(self._plan, repo_id, revision)
            with self._lock:
                if record is None:
                    record = DownloadRecord(repo_id, revision)
                    self._records[record.id] = record
                record.state, record.commit = DownloadState.QUEUED, plan.commit
                record.files = files
                record.error_code = record.error = record.finished_at = record.path = None
            await asyncio.to_thread(self._save)
            self._stops[record.id] = _Stop()
            self._tasks[record.id] = asyncio.create_task(self._run(record))
            return record

    async def resume(self, download_id: str) -> DownloadRecord:
        record = self.get(download_id)
        if not record.resumable:
            raise Conflict(
                f"download {download_id} is {record.state.value}: only a failed, cancelled or "
                "interrupted download can be resumed",
                code="download_not_resumable",
            )
        return await self.start(record.repo_id, record.revision)

    async def cancel(self, download_id: str) -> DownloadRecord:
        record = self.get(download_id)
        stop = self._stops.get(download_id)
        if not record.active or stop is None:
            raise Conflict(
                f"download {download_id} is {record.state.value}: there is nothing to cancel",
                code="download_not_active",
            )
        self._stop(download_id, DownloadState.CANCELLED)
        task = self._tasks.get(download_id)
        if task is not None:
            await asyncio.wait({task}, timeout=CANCEL_WAIT_S)
        return record

    def _stop(self, download_id: str, why: DownloadState) -> None:
        """Ask a download to stop: a running one stops at its next chunk (the hook raises),
        a queued one at once (its wait for the slot is cancelled)."""
        stop = self._stops[download_id]
        stop.becomes = why
        stop.event.set()
        task = self._tasks.get(download_id)
        if task is not None and self._records[download_id].state is DownloadState.QUEUED:
            task.cancel()  # it waits for the slot: no await between the slot and DOWNLOADING

    async def forget(self, download_id: str) -> None:
        """Drop a record that is not running (its files stay in the cache)."""
        record = self.get(download_id)
        if record.active:
            raise Conflict(
                f"download {download_id} is {record.state.value}: cancel it first",
                code="download_active",
            )
        with self._lock:
            del self._records[download_id]
        await asyncio.to_thread(self._save)

    async def watch(
        self, download_id: str, interval_s: float = 0.5
    ) -> AsyncIterator[dict[str, Any]]:
        """The download's view whenever it changes, until (and including) its end state."""
        record = self.get(download_id)
        last: dict[str, Any] | None = None
        while True:
            body = self.view(record)
            if body != last:
                yield body
                last = body
            if not record.active:
                return
            await asyncio.sleep(interval_s)

    def view(self, record: DownloadRecord) -> dict[str, Any]:
        """The download as the API shows it: state, bytes, rate, ETA and each file."""
        with self._lock:
            transfer = self._transfers.get(record.id)
            files = [(f.name, f.size, f.done_bytes, f.state) for f in record.files]
            running = transfer is not None and record.state is DownloadState.DOWNLOADING
            rate = transfer.meter.rate(self._clock()) if running and transfer else None
        done = sum(f[2] for f in files)
        total = sum(f[1] for f in files)
        return {
            "id": record.id,
            "repo_id": record.repo_id,
            "revision": record.revision,
            "commit": record.commit,
            "state": record.state.value,
            "resumable": record.resumable,
            "bytes_done": done,
            "bytes_total": total,
            "percent": percent(done, total),
            "rate_bytes_per_s": None if rate is None else round(rate, 1),
            "eta_s": None if not running else _rounded(eta_s(total - done, rate)),
            "files_done": sum(1 for f in files if f[3] is FileState.DONE),
            "files_total": len(files),
            "files": [
                {"name": n, "size": s, "bytes_done": d, "state": st.value} for n, s, d, st in files
            ],
            "error": None
            if record.error is None
            else {"code": record.error_code, "message": record.error},
            "model": record.repo_id if record.state is DownloadState.DONE else None,
            "created_at": record.created_at,
            "finished_at": record.finished_at,
        }

    async def close(self, wait_s: float = 3.0) -> None:
        """Stop every running download; each is left `interrupted` (resumable)."""
        for download_id in list(self._stops):
            self._stop(download_id, DownloadState.INTERRUPTED)
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=wait_s)
        for record in self._records.values():
            if record.active:
                record.state = DownloadState.INTERRUPTED
        if self._opened:
            await asyncio.to_thread(self._save)

    def _plan(self, repo_id: str, revision: str) -> tuple[hub.Plan, list[FileProgress]]:
        """The hub's file list, each file already in the cache marked done (worker thread)."""
        plan = hub.plan(repo_id, revision, self._timeout_s)
        if dropped := hub.drop_stale_partials(repo_id):
            log.info("dropped %d partial file(s) of %s left by an earlier run", dropped, repo_id)
        files = [FileProgress(f.name, f.size) for f in plan.files]
        for file in files:
            if hub.cached(repo_id, file.name, plan.commit) is not None:
                file.finish()
        hub.check_room(sum(f.size for f in files if f.state is not FileState.DONE))
        return plan, files

    async def _run(self, record: DownloadRecord) -> None:
        stop = self._stops[record.id]
        try:
            async with self._slot:
                if stop.event.is_set():
                    raise hub.Cancelled
                transfer = Transfer(record.files)
                with self._lock:
                    self._transfers[record.id] = transfer
                    record.state = DownloadState.DOWNLOADING
                await asyncio.to_thread(self._save)
                snapshot = await asyncio.to_thread(self._fetch_all, record, transfer, stop.event)
            record.path = str(snapshot)
            await self._on_done(record.repo_id, snapshot)  # served before anyone sees "done"
            await self._finish(record, DownloadState.DONE)
        except hub.Cancelled:
            await self._finish(record, stop.becomes)
        except asyncio.CancelledError:
            await self._finish(record, stop.becomes)
            if not stop.event.is_set():  # not our own stop (the loop is closing): pass it on
                raise
        except ApiError as exc:
            await self._finish(record, DownloadState.FAILED, exc.code, exc.message)
        except Exception as exc:  # a bug or the disk: recorded in words, logged in full
            log.exception("download %s of %s failed", record.id, record.repo_id)
            message = f"{type(exc).__name__}: {without_paths(str(exc))}"
            await self._finish(record, DownloadState.FAILED, "download_failed", message)
        finally:
            self._stops.pop(record.id, None)
            self._tasks.pop(record.id, None)
            with self._lock:
                self._transfers.pop(record.id, None)

    async def _finish(
        self,
        record: DownloadRecord,
        state: DownloadState,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        with self._lock:
            record.state, record.error_code, record.error = state, code, message
            record.finished_at = time.time()
        detail = f" ({message})" if message else ""
        log.info("download of %s: %s%s", record.repo_id, state.value, detail)
        await asyncio.to_thread(self._save)

    def _fetch_all(self, record: DownloadRecord, transfer: Transfer, stop: threading.Event) -> Path:
        """Fetch each missing file in turn (worker thread); the snapshot directory."""
        commit = record.commit or ""
        for index, file in enumerate(transfer.files):
            if stop.is_set():
                raise hub.Cancelled
            if file.state is FileState.DONE:
                continue

            def on_bytes(n: int, index: int = index) -> None:
                if stop.is_set():
                    raise hub.Cancelled
                with self._lock:
                    transfer.add(index, n, self._clock())

            path = hub.fetch(record.repo_id, file.name, record.revision, self._timeout_s, on_bytes)
            if commit not in path.parts:
                raise UpstreamUnavailable(
                    f"the revision '{record.revision}' of '{record.repo_id}' moved to another "
                    "commit during the download; start it again (finished files are kept)",
                    code="revision_moved",
                )
            with self._lock:
                file.finish()
            self._save()  # a restart then shows which files are done
        config = hub.cached(record.repo_id, "config.json", commit)
        if config is None:
            raise UpstreamUnavailable("config.json is missing from the cache after the download")
        return config.parent

    def _save(self) -> None:
        with self._lock:
            entries = [r.to_json() for r in self._records.values()]
        with self._save_lock:
            self._file.save(entries)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
