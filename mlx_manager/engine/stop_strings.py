"""Stop sequences on the detokenized text stream.

Text that might be the start of a stop string is held back until it either completes the stop
(then it is dropped, never shown to the client) or stops matching (then it is released).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class StopStringMatcher:
    stops: tuple[str, ...]
    matched: str | None = field(default=None, init=False)  # the stop string that was hit
    _held: str = field(default="", init=False)

    def feed(self, text: str) -> tuple[str, bool]:
        """Add new text; return (text safe to emit, whether a stop string was hit)."""
        if not self.stops:
            return text, False
        buffer = self._held + text
        first = min(
            (index for index in (buffer.find(stop) for stop in self.stops) if index >= 0),
            default=-1,
        )
        if first >= 0:
            self._held = ""
            self.matched = min(
                (s for s in self.stops if buffer.find(s) == first), key=len, default=None
            )
            return buffer[:first], True
        keep = self._longest_stop_prefix_suffix(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep], False

    def flush(self) -> str:
        """Release what was held back (generation ended for another reason)."""
        text, self._held = self._held, ""
        return text

    def _longest_stop_prefix_suffix(self, buffer: str) -> int:
        best = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(buffer)), best, -1):
                if stop.startswith(buffer[-size:]):
                    best = size
                    break
        return best
