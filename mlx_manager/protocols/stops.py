"""Stop sequences as both dialects accept them: a bounded count of bounded, non-empty strings.

The engine checks every stop string against the tail of the text after each token, so an
unbounded list is work per token that a client alone decides. OpenAI documents at most 4
(chat and completions); Anthropic documents no limit, so its cap is a generous 64.
"""

from __future__ import annotations

from collections.abc import Sequence

from mlx_manager.errors import InvalidRequest

OPENAI_MAX_STOPS = 4
ANTHROPIC_MAX_STOPS = 64
MAX_STOP_CHARS = 1000


def checked_stops(stops: Sequence[str], param: str, max_count: int) -> tuple[str, ...]:
    """`stops` as a tuple, or a 400 naming `param` (the count, an empty or a long string)."""
    if len(stops) > max_count:
        raise InvalidRequest(
            f"'{param}' has {len(stops)} sequences; at most {max_count} are accepted.",
            param=param,
            code="array_above_max_length",
        )
    if any(s == "" for s in stops):
        raise InvalidRequest(f"'{param}' must not hold empty strings.", param=param)
    if any(len(s) > MAX_STOP_CHARS for s in stops):
        raise InvalidRequest(
            f"'{param}' holds a sequence longer than {MAX_STOP_CHARS} characters.",
            param=param,
            code="string_above_max_length",
        )
    return tuple(stops)
