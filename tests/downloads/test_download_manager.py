"""The download manager's state machine, with huggingface_hub's side replaced by a scripted
hub (the real one is exercised end to end in tests/api/test_downloads_http.py): queueing,
cancel, failure, resume rules, records across a restart, and hub errors in words."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx2
import pytest
from filelock import FileLock
from huggingface_hub.errors import LocalEntryNotFoundError

from mlx_manager.downloads import hub
from mlx_manager.downloads.manager import DownloadManager
from mlx_manager.downloads.records import DownloadState, RecordFile
from mlx_manager.errors import (
    ApiError,
    Conflict,
    InsufficientStorage,
    NotFound,
    UpstreamUnavailable,
)

COMMIT = "c" * 40


class ScriptedHub:
    """Two files per repo; fetching the weights waits for `release` (unless set)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.release = threading.Event()
        self.fail: ApiError | None = None
        self.fetched: list[tuple[str, str]] = []

    def plan(self, repo_id: str, revision: str, timeout_s: float) -> hub.Plan:
        files = (hub.HubFile("config.json", 10), hub.HubFile("model.safetensors", 1000))
        return hub.Plan(COMMIT, files)

    def snapshot(self, repo_id: str) -> Path:
        return self.root / repo_id.replace("/", "--") / "snapshots" / COMMIT

    def drop_stale_partials(self, repo_id: str) -> int:
        return 0

    def cached(self, repo_id: str, filename: str, commit: str) -> Path | None:
        path = self.snapshot(repo_id) / filename
        return path if path.exists() else None

    def fetch(
        self,
        repo_id: str,
        filename: str,
        revision: str,
        timeout_s: float,
        on_bytes: Callable[[int], None],
    ) -> Path:
        self.fetched.append((repo_id, filename))
        size = 10 if filename == "config.json" else 1000
        for _ in range(size // 10):
            while filename != "config.json" and not self.release.wait(0.01):
                on_bytes(0)  # as a slow link: the hook runs (and may stop it) meanwhile
            if self.fail is not None:
                raise self.fail
            on_bytes(10)
        path = self.snapshot(repo_id) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        return path


@pytest.fixture
def scripted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ScriptedHub:
    fake = ScriptedHub(tmp_path / "cache")
    for name in ("plan", "cached", "fetch", "drop_stale_partials"):
        monkeypatch.setattr(hub, name, getattr(fake, name))
    return fake


def manager(tmp_path: Path, done: list[tuple[str, Path]]) -> DownloadManager:
    async def on_done(repo_id: str, path: Path) -> None:
        done.append((repo_id, path))

    return DownloadManager(RecordFile(tmp_path / "data" / "downloads.json"), 1.0, on_done)


def run(scenario: Coroutine[Any, Any, None], scripted: ScriptedHub) -> None:
    """Run a scenario; a failing one never leaves a worker thread waiting (asyncio.run would
    wait for it at exit)."""

    async def guarded() -> None:
        try:
            await scenario
        finally:
            scripted.release.set()

    asyncio.run(guarded())


async def settle(downloads: DownloadManager, download_id: str) -> dict[str, object]:
    views = [view async for view in downloads.watch(download_id, interval_s=0.01)]
    return views[-1]


async def _one_at_a_time_cancel_and_finish(tmp_path: Path, scripted: ScriptedHub) -> None:
    done: list[tuple[str, Path]] = []
    downloads = manager(tmp_path, done)
    await downloads.open()
    first = await downloads.start("org/first")
    second = await downloads.start("org/second")
    assert (await downloads.start("org/first")) is first  # running: the same download
    await asyncio.sleep(0.05)
    assert first.state is DownloadState.DOWNLOADING and second.state is DownloadState.QUEUED
    await downloads.cancel(second.id)
    assert second.state is DownloadState.CANCELLED and second.resumable
    with pytest.raises(Conflict):
        await downloads.cancel(second.id)
    scripted.release.set()
    view = await settle(downloads, first.id)
    assert view["state"] == "done" and view["percent"] == 100.0 and view["model"] == "org/first"
    assert view["files_done"] == 2 and view["bytes_done"] == 1010
    assert done == [("org/first", scripted.snapshot("org/first"))]
    with pytest.raises(Conflict):
        await downloads.resume(first.id)
    assert ("org/second", "config.json") not in scripted.fetched  # cancelled while queued
    await downloads.close()


async def _cancel_midway_then_resume_skips_finished_files(
    tmp_path: Path, scripted: ScriptedHub
) -> None:
    downloads = manager(tmp_path, [])
    await downloads.open()
    record = await downloads.start("org/model")
    while not downloads.view(record)["files_done"]:
        await asyncio.sleep(0.01)
    scripted.release.set()  # let a few chunks through, then cancel
    scripted.release.clear()
    await downloads.cancel(record.id)
    view = downloads.view(record)
    assert view["state"] == "cancelled" and view["files_done"] == 1 and view["resumable"]
    scripted.release.set()
    resumed = await downloads.resume(record.id)
    assert resumed is record and downloads.view(record)["files_done"] == 1
    assert (await settle(downloads, record.id))["state"] == "done"
    assert scripted.fetched.count(("org/model", "config.json")) == 1


async def _failure_is_recorded_in_words(tmp_path: Path, scripted: ScriptedHub) -> None:
    downloads = manager(tmp_path, [])
    await downloads.open()
    scripted.fail = UpstreamUnavailable("the hub is unreachable", code="hub_unreachable")
    scripted.release.set()
    record = await downloads.start("org/model")
    view = await settle(downloads, record.id)
    assert view["state"] == "failed" and view["resumable"]
    assert view["error"] == {"code": "hub_unreachable", "message": "the hub is unreachable"}


async def _records_survive_a_restart(tmp_path: Path, scripted: ScriptedHub) -> None:
    downloads = manager(tmp_path, [])
    await downloads.open()
    running = await downloads.start("org/running")
    while not downloads.view(running)["files_done"]:
        await asyncio.sleep(0.01)
    # A kill -9: nothing is closed, the file holds what the last write put there.
    again = manager(tmp_path, [])
    await again.open()
    record = again.get(running.id)
    assert record.state is DownloadState.INTERRUPTED and record.resumable
    assert again.view(record)["files_done"] == 1
    assert again.finished() == []
    with pytest.raises(NotFound):
        again.get("nope")
    scripted.release.set()
    await downloads.close()  # the first instance's worker ends
    await again.resume(record.id)
    assert (await settle(again, record.id))["state"] == "done"
    third = manager(tmp_path, [])
    await third.open()
    assert third.finished() == [("org/running", scripted.snapshot("org/running"))]
    await third.forget(record.id)
    assert third.records() == []


def test_partials_nobody_writes_are_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    blobs = tmp_path / "models--org--m" / "blobs"
    blobs.mkdir(parents=True)
    dead, live, whole = blobs / "aaa.1234.incomplete", blobs / "bbb.5678.incomplete", blobs / "ccc"
    for path in (dead, live, whole):
        path.write_bytes(b"x")
    (tmp_path / ".locks" / "models--org--m").mkdir(parents=True)
    with FileLock(tmp_path / ".locks" / "models--org--m" / "bbb.lock"):  # being written
        assert hub.drop_stale_partials("org/m") == 1
    assert not dead.exists() and live.exists() and whole.exists()


def test_no_room_is_a_507_before_any_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub, "free_bytes", lambda _path: 5_000_000)
    hub.check_room(4_000_000)
    with pytest.raises(InsufficientStorage) as caught:
        hub.check_room(7_000_000)
    assert caught.value.status == 507 and "5 MB free" in caught.value.message
    assert "7 MB more" in caught.value.message


def test_hub_errors_in_words() -> None:
    refused = hub.hub_error(httpx2.ConnectError("Connection refused"), "a/b", "main", 5.0)
    assert refused.status == 502 and refused.code == "hub_unreachable"
    assert "unreachable" in refused.message and "Connection refused" in refused.message
    slow = hub.hub_error(httpx2.ReadTimeout("timed out"), "a/b", "main", 5.0)
    assert slow.status == 504 and slow.code == "hub_timeout" and "5s" in slow.message
    try:
        try:
            raise httpx2.ConnectError("Name or service not known")
        except httpx2.ConnectError as cause:
            raise LocalEntryNotFoundError("cannot find the requested files") from cause
    except LocalEntryNotFoundError as wrapped:
        head = hub.hub_error(wrapped, "a/b", "main", 5.0)
    assert head.code == "hub_unreachable" and "Name or service" in head.message
    full = hub.hub_error(OSError(28, "No space left on device", "/x/blobs/abc"), "a/b", "m", 5)
    assert full.code == "disk_error" and full.message.endswith("No space left on device")
    short = hub.hub_error(OSError("Consistency check failed: size 3 but has 2"), "a/b", "m", 5)
    assert short.status == 502 and "Consistency check failed" in short.message


def test_one_at_a_time_cancel_and_finish(tmp_path: Path, scripted: ScriptedHub) -> None:
    run(_one_at_a_time_cancel_and_finish(tmp_path, scripted), scripted)


def test_cancel_midway_then_resume_skips_finished_files(
    tmp_path: Path, scripted: ScriptedHub
) -> None:
    run(_cancel_midway_then_resume_skips_finished_files(tmp_path, scripted), scripted)


def test_failure_is_recorded_in_words(tmp_path: Path, scripted: ScriptedHub) -> None:
    run(_failure_is_recorded_in_words(tmp_path, scripted), scripted)


def test_records_survive_a_restart(tmp_path: Path, scripted: ScriptedHub) -> None:
    run(_records_survive_a_restart(tmp_path, scripted), scripted)
