"""Progress maths of a download: bytes per file, transfer rate over a sliding window, ETA.

Pure and clock-free (every call takes `now`), so it is unit-tested without a network. The
rate counts only bytes that came over the wire in this run: files found finished in the cache
add to `bytes_done` but never to the rate, so a resumed download does not claim a burst of
speed it never had.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class FileState(enum.StrEnum):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    DONE = "done"


@dataclass(slots=True)
class FileProgress:
    name: str
    size: int
    done_bytes: int = 0
    state: FileState = FileState.PENDING

    def finish(self) -> None:
        self.done_bytes, self.state = self.size, FileState.DONE


class RateMeter:
    """Bytes per second over the last `window_s` seconds, from (time, total) samples.

    Samples closer together than `min_gap_s` are merged (a download reports every chunk);
    the rate's denominator runs to `now`, so a stalled transfer's rate falls toward zero
    instead of freezing at its last value."""

    def __init__(self, window_s: float = 5.0, min_gap_s: float = 0.1) -> None:
        self.window_s = window_s
        self.min_gap_s = min_gap_s
        self._samples: deque[tuple[float, int]] = deque()

    def record(self, now: float, total: int) -> None:
        """`total`: bytes transferred so far in this run (never decreasing but for a retry)."""
        if self._samples and now - self._samples[-1][0] < self.min_gap_s:
            self._samples[-1] = (self._samples[-1][0], total)
        else:
            self._samples.append((now, total))
        # Keep one sample at or before the window's start: the base of the rate.
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()

    def rate(self, now: float) -> float | None:
        """Bytes per second, or None until a rate can be told (under 0.5 s of samples)."""
        if not self._samples:
            return None
        base_t, base_total = self._samples[0]
        for t, total in self._samples:  # the newest sample at or before the window's start
            if t <= now - self.window_s:
                base_t, base_total = t, total
        elapsed = now - base_t
        if elapsed < 0.5:
            return None
        return max(self._samples[-1][1] - base_total, 0) / elapsed


def eta_s(remaining_bytes: int, rate: float | None) -> float | None:
    """Seconds left at `rate`; 0 when nothing is left; None when the rate is unknown or 0."""
    if remaining_bytes <= 0:
        return 0.0
    if not rate:
        return None
    return remaining_bytes / rate


def percent(done: int, total: int) -> float:
    """Share done, 0..100, one decimal; an empty total counts as done."""
    if total <= 0:
        return 100.0
    return round(min(done, total) * 100.0 / total, 1)


@dataclass(slots=True)
class Transfer:
    """The live counters of one running download (written by its worker thread under the
    manager's lock, read by the event loop)."""

    files: list[FileProgress]
    meter: RateMeter = field(default_factory=RateMeter)
    transferred: int = 0  # bytes received in this run

    @property
    def done_bytes(self) -> int:
        return sum(f.done_bytes for f in self.files)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def add(self, index: int, n: int, now: float) -> None:
        """`n` bytes of file `index` arrived (negative: a retry dropped what it had)."""
        file = self.files[index]
        file.state = FileState.DOWNLOADING
        file.done_bytes = max(file.done_bytes + n, 0)
        # A file may turn out larger than the listing said: grow its size, never report >100%.
        file.size = max(file.size, file.done_bytes)
        self.transferred = max(self.transferred + n, 0)
        self.meter.record(now, self.transferred)
