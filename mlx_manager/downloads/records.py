"""A download's record and where records are kept: one JSON file in the data directory.

Why a file and not the database: a download fills this machine's Hugging Face cache, while
the database may be a PostgreSQL shared by several instances; a record must live and die with
the cache it describes. The file is small (one entry per repo and revision) and is replaced
atomically (temporary file + rename), so a kill mid-write leaves the old one whole.

A record read back in state queued or downloading was cut off by a restart: it becomes
`interrupted`, which (like failed and cancelled) is resumable.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx_manager.downloads.progress import FileProgress, FileState

log = logging.getLogger(__name__)


class DownloadState(enum.StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the server stopped while it ran


ACTIVE = frozenset({DownloadState.QUEUED, DownloadState.DOWNLOADING})
RESUMABLE = frozenset({DownloadState.FAILED, DownloadState.CANCELLED, DownloadState.INTERRUPTED})


@dataclass(slots=True)
class DownloadRecord:
    repo_id: str
    revision: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    state: DownloadState = DownloadState.QUEUED
    commit: str | None = None
    files: list[FileProgress] = field(default_factory=list)
    error_code: str | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    path: str | None = None  # the snapshot directory, once done

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def resumable(self) -> bool:
        return self.state in RESUMABLE

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "state": self.state.value,
            "commit": self.commit,
            "files": [[f.name, f.size, f.state is FileState.DONE] for f in self.files],
            "error_code": self.error_code,
            "error": self.error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "path": self.path,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DownloadRecord:
        files = [FileProgress(str(n), int(s)) for n, s, _done in data.get("files", [])]
        for file, (_n, _s, done) in zip(files, data.get("files", []), strict=True):
            if done:
                file.finish()
        state = DownloadState(data["state"])
        return cls(
            repo_id=str(data["repo_id"]),
            revision=str(data["revision"]),
            id=str(data["id"]),
            state=DownloadState.INTERRUPTED if state in ACTIVE else state,
            commit=data.get("commit"),
            files=files,
            error_code=data.get("error_code"),
            error=data.get("error"),
            created_at=float(data.get("created_at") or 0.0),
            finished_at=data.get("finished_at"),
            path=data.get("path"),
        )


class RecordFile:
    """The records of this machine's downloads, in `<data dir>/downloads.json`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[DownloadRecord]:
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s): download records start empty", self.path, exc)
            return []
        records: list[DownloadRecord] = []
        for entry in entries if isinstance(entries, list) else []:
            try:
                records.append(DownloadRecord.from_json(entry))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("skipping an unreadable download record: %s", exc)
        return records

    def save(self, entries: list[dict[str, Any]]) -> None:
        """Replace the file with `entries` (each a `DownloadRecord.to_json()`)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(entries, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)
