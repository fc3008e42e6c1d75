"""413 for a generation body that cannot fit the model it names, decided while it arrives.

A giant prompt used to be refused after FastAPI had parsed the whole body (json.loads: ~50 ms
per 15 MiB, holding the GIL) and the lone-surrogate guard had scanned it (~15 ms): every other
request and stream on the event loop waited meanwhile. BodyLimitMiddleware feeds each chunk of
a generation route's body to a `GiantBodyScreen` (cheap byte scans, api/body_scan.py); once the
body is in, a body larger than the bound of every model it may name (frontend/body_bound.py,
routing/body_bounds.py) is answered 413 in the caller's dialect, unparsed. Anything else (a
normal body, a name without a bound, an ambiguous scan) goes on as before.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import Scope

from mlx_manager.api.body_scan import BodyScan
from mlx_manager.api.middleware import declared_length
from mlx_manager.errors import RequestTooLarge, shorten
from mlx_manager.frontend.body_bound import (
    ALLOWANCE_BYTES,
    BodyBound,
    BodyCounts,
    cannot_fit,
    min_text_chars,
)
from mlx_manager.routing.body_bounds import BodyBounds

# The routes whose JSON body names a model and carries its prompt.
GENERATION_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/v1/responses",
    }
)


class GiantBodyScreen:
    """One request's screen: `feed` each body chunk, then `refusal()` once the body is in."""

    def __init__(self, bounds: BodyBounds) -> None:
        self._bounds = bounds
        self._scan = BodyScan()

    def feed(self, chunk: bytes) -> None:
        self._scan.feed(chunk)

    def refusal(self) -> RequestTooLarge | None:
        scan = self._scan
        scan.finish()
        if scan.size <= ALLOWANCE_BYTES or scan.ambiguous or not scan.names:
            return None  # no bound is this small; or no name to trust
        counts = scan.counts()
        lenient: BodyBound | None = None  # of every target of every name, the largest
        for name in scan.names:
            bounds = self._bounds.bounds(name)
            if bounds is None:
                return None
            for bound in bounds:
                if not cannot_fit(bound, counts):
                    return None
                if lenient is None or bound.text_chars > lenient.text_chars:
                    lenient = bound
        if lenient is None:
            return None
        return _too_large(lenient, counts)


def _too_large(bound: BodyBound, counts: BodyCounts) -> RequestTooLarge:
    text = min_text_chars(counts, bound.allowance)
    return RequestTooLarge(
        f"The request body ({counts.size} bytes) holds more prompt text than model "
        f"'{shorten(bound.model_id)}' can take: at least {text} characters, and its context of "
        f"{bound.context_length} tokens fits fewer than {bound.text_chars}. Please reduce the "
        "length of the prompt."
    )


def giant_body_screens(
    bounds_of: Callable[[], BodyBounds | None],
) -> Callable[[Scope], GiantBodyScreen | None]:
    """For BodyLimitMiddleware: a screen for each generation request whose body may be giant."""

    def screen(scope: Scope) -> GiantBodyScreen | None:
        if scope.get("method") != "POST" or scope.get("path") not in GENERATION_PATHS:
            return None
        declared = declared_length(scope)
        if declared is not None and declared <= ALLOWANCE_BYTES:
            return None  # too small to refuse: not even scanned
        bounds = bounds_of()
        return GiantBodyScreen(bounds) if bounds is not None else None

    return screen
