"""A full disk said in words: which directory, how much is free, how much was needed.

MLX's safetensors writer reports a full disk as "[write] Unable to write N bytes to file."
(a RuntimeError with neither the path nor the cause) and Python's as "[Errno 28] No space left
on device"; a conversion also takes minutes before its first write. So writers check the free
space first and turn either failure into `DiskFull`, naming the directory.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_MLX_WRITE_FAILED = "Unable to write"


class DiskFull(OSError):
    def __init__(self, directory: Path, free: int | None, needed: int | None) -> None:
        parts = [f"{_mb(free)} free"] if free is not None else []
        if needed is not None:
            parts.append(f"about {_mb(needed)} needed")
        detail = f" ({', '.join(parts)})" if parts else ""
        self.message = f"cannot write to {directory}: no space left on device{detail}"
        super().__init__(errno.ENOSPC, self.message)

    def __str__(self) -> str:
        return self.message


def free_bytes(directory: Path) -> int | None:
    """Free bytes on the file system holding `directory` (or its nearest existing parent)."""
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def check_free_space(directory: Path, needed: int) -> None:
    """DiskFull now, before writing `needed` bytes into `directory` that cannot fit."""
    free = free_bytes(directory)
    if free is not None and free < needed:
        raise DiskFull(directory, free, needed)


@contextlib.contextmanager
def writing_into(directory: Path, needed: int | None = None) -> Iterator[None]:
    """Turn a write failing for lack of space into DiskFull naming `directory`."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, DiskFull) or exc.errno not in _FULL_ERRNOS:
            raise
        raise DiskFull(directory, free_bytes(directory), needed) from exc
    except RuntimeError as exc:
        if _MLX_WRITE_FAILED not in str(exc):
            raise
        raise DiskFull(directory, free_bytes(directory), needed) from exc


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size >= 1e6 else f"{size:,} bytes"
