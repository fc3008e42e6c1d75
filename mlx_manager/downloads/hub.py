"""What a download asks of the Hugging Face hub, through huggingface_hub only.

- `plan`: one `model_info(files_metadata=True)` call gives the commit and every file with its
  size; the files mlx-lm needs are kept (models.sources.ALLOW_PATTERNS), smallest first.
- `fetch`: `hf_hub_download` of one file into the standard cache, with a progress hook passed
  as its `tqdm_class`. The hook sees every chunk as it is written, so the byte counts are the
  bytes on disk (retries that drop bytes report them negative), and raising from it stops the
  transfer at once: huggingface_hub deletes its temporary file and holds no lock afterwards.
  That is why a hook and not polling file sizes: polling could only guess the temporary
  file's name and could not stop a transfer.
- `cached`: a file already in the cache for the commit (a finished file of an earlier run).

huggingface_hub 2.4 writes each file to a process-unique temporary file and deletes it on
failure, so a file cut off by a restart starts again from its first byte; finished files are
kept and never fetched again. The hub's address is huggingface_hub's own (`HF_ENDPOINT`),
never a caller's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx2
from filelock import FileLock, Timeout
from huggingface_hub import HfApi, constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import filter_repo_objects

from mlx_manager.errors import (
    ApiError,
    InsufficientStorage,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
    shorten,
    without_paths,
)
from mlx_manager.models.disk_space import free_bytes
from mlx_manager.models.sources import ALLOW_PATTERNS

# http_get reads a body in DOWNLOAD_CHUNK_SIZE pieces (10 MiB) and calls the hook between
# pieces only: on a 10 Mbit/s link that is one progress update, and one chance to cancel, every
# 8 s. 128 KiB pieces keep both prompt at any speed, for a negligible cost per piece.
PIECE_BYTES = 128 * 1024
constants.DOWNLOAD_CHUNK_SIZE = min(constants.DOWNLOAD_CHUNK_SIZE, PIECE_BYTES)


class Cancelled(Exception):
    """Raised from the progress hook: the download was asked to stop."""


@dataclass(frozen=True, slots=True)
class HubFile:
    name: str
    size: int


@dataclass(frozen=True, slots=True)
class Plan:
    commit: str
    files: tuple[HubFile, ...]


def hub_address() -> str:
    """The hub's scheme://host[:port], for messages (never any credentials in the URL)."""
    parts = urlsplit(constants.ENDPOINT)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def plan(repo_id: str, revision: str, timeout_s: float) -> Plan:
    """The commit and the MLX files of `repo_id` at `revision`; an ApiError says why not."""
    try:
        info = HfApi().model_info(
            repo_id, revision=revision, files_metadata=True, timeout=timeout_s
        )
    except Exception as exc:
        raise hub_error(exc, repo_id, revision, timeout_s) from exc
    siblings = {s.rfilename: s.size or 0 for s in info.siblings or ()}
    names = list(filter_repo_objects(list(siblings), allow_patterns=ALLOW_PATTERNS))
    if "config.json" not in names or not any(n.endswith(".safetensors") for n in names):
        raise InvalidRequest(
            f"'{repo_id}' is not an MLX-loadable model: it needs config.json and "
            ".safetensors weights (other weight formats are not downloaded).",
            param="repo_id",
            code="not_an_mlx_model",
        )
    if not info.sha:
        raise UpstreamUnavailable(f"the hub at {hub_address()} named no commit for '{repo_id}'")
    files = sorted((HubFile(n, siblings[n]) for n in names), key=lambda f: (f.size, f.name))
    return Plan(info.sha, tuple(files))


def cached(repo_id: str, filename: str, commit: str) -> Path | None:
    """`filename` of `commit` in the cache, or None (no network)."""
    found = try_to_load_from_cache(repo_id, filename, revision=commit)
    return Path(found) if isinstance(found, str) else None


def check_room(needed: int) -> None:
    """507 now, rather than a full disk minutes into the download, when the cache's file
    system cannot hold the `needed` bytes still to fetch."""
    free = free_bytes(Path(constants.HF_HUB_CACHE))
    if free is not None and free < needed:
        raise InsufficientStorage(
            f"the Hugging Face cache's disk has {free / 1e6:,.0f} MB free; this download needs "
            f"{needed / 1e6:,.0f} MB more. Free some space (or set HF_HUB_CACHE elsewhere)."
        )


def drop_stale_partials(repo_id: str) -> int:
    """Delete the repo's partial files that no process is writing; how many.

    A server killed mid-file leaves huggingface_hub's `<etag>.<id>.incomplete` behind (it
    never reuses one: the id is per process); a file in progress is always written under its
    etag's lock in the cache's `.locks`, so a partial whose lock is free is dead weight."""
    cache = Path(constants.HF_HUB_CACHE)
    folder = repo_folder_name(repo_id=repo_id, repo_type="model")
    dropped = 0
    for partial in (cache / folder / "blobs").glob("*.incomplete"):
        lock = FileLock(cache / ".locks" / folder / f"{partial.name.split('.')[0]}.lock")
        try:
            with lock.acquire(timeout=0):
                partial.unlink(missing_ok=True)
                dropped += 1
        except (Timeout, OSError):
            continue  # being written (or not ours to touch)
    return dropped


def fetch(
    repo_id: str,
    filename: str,
    revision: str,
    timeout_s: float,
    on_bytes: Callable[[int], None],
) -> Path:
    """Download one file into the cache (nothing if it is there); its snapshot path.

    `on_bytes(n)` is called for every chunk written; whatever it raises (`Cancelled`) stops
    the transfer and comes out of this call. The revision as asked (not the commit) is passed
    so huggingface_hub records the ref (refs/main) as `snapshot_download` would."""
    hook = functools.partial(_ByteHook, on_bytes=on_bytes)
    try:
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            etag_timeout=timeout_s,
            tqdm_class=cast(Any, hook),
        )
    except Cancelled:
        raise
    except Exception as exc:
        raise hub_error(exc, repo_id, revision, timeout_s) from exc
    return Path(path)


class _ByteHook:
    """The part of tqdm's interface huggingface_hub's http_get uses, reporting to a callback."""

    def __init__(self, *, on_bytes: Callable[[int], None], **_tqdm_kwargs: object) -> None:
        self._on_bytes = on_bytes

    def update(self, n: int | float | None = 1) -> None:
        self._on_bytes(int(n or 0))

    def close(self) -> None:
        pass

    def __enter__(self) -> _ByteHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


def hub_error(exc: BaseException, repo_id: str, revision: str, timeout_s: float) -> ApiError:
    """A hub failure as the ApiError a caller can act on, its message in words."""
    where = f"the Hugging Face hub at {hub_address()}"
    repo = shorten(repo_id)
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, GatedRepoError):
        return PermissionDenied(
            f"'{repo}' is gated on the hub: accept its licence there and give the server "
            "a token (HF_TOKEN).",
            code="repo_gated",
        )
    if isinstance(exc, RepositoryNotFoundError):
        return NotFound(
            f"{where} has no model '{repo}' (or it is private and the server has no token for it).",
            param="repo_id",
            code="repo_not_found",
        )
    if isinstance(exc, RevisionNotFoundError):
        return NotFound(
            f"'{repo}' has no revision '{shorten(revision)}' on the hub.",
            param="revision",
            code="revision_not_found",
        )
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 429:
            return RateLimited(f"{where} is rate-limiting downloads; retry later.")
        if status in (401, 403):
            return PermissionDenied(f"{where} refused access to '{repo}' (HTTP {status}).")
        return UpstreamUnavailable(
            f"{where} answered HTTP {status} for '{repo}'.", code="hub_error"
        )
    if isinstance(exc, httpx2.TimeoutException):
        return UpstreamTimeout(
            f"{where} did not answer within {timeout_s:g}s; check the network or HF_ENDPOINT.",
            code="hub_timeout",
        )
    if isinstance(exc, OfflineModeIsEnabled):
        return UpstreamUnavailable(
            "downloads are off: HF_HUB_OFFLINE is set on the server.", code="hub_offline"
        )
    if isinstance(exc, httpx2.TransportError):
        return UpstreamUnavailable(
            f"{where} is unreachable ({type(exc).__name__}: {exc}); check the network or "
            "HF_ENDPOINT.",
            code="hub_unreachable",
        )
    if isinstance(exc, LocalEntryNotFoundError):
        if exc.__cause__ is not None:  # the HEAD call's own error says more
            return hub_error(exc.__cause__, repo_id, revision, timeout_s)
        return UpstreamUnavailable(f"{where} is unreachable.", code="hub_unreachable")
    if isinstance(exc, OSError) and exc.errno is not None:  # the disk (full, read-only)
        return ApiError(f"writing the download failed: {exc.strerror}", code="disk_error")
    return UpstreamUnavailable(
        f"downloading '{repo}' from {where} failed: {type(exc).__name__}: "
        f"{without_paths(str(exc))}",
        code="hub_error",
    )
