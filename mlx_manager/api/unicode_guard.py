"""400 for JSON bodies holding a lone UTF-16 surrogate (`"\\ud800"`), naming the parameter.

JSON may escape a surrogate half on its own and Python's json module accepts it (raw UTF-8
surrogate bytes too: it decodes with 'surrogatepass'), but such a string is not Unicode text:
it cannot be encoded to UTF-8, so the tokenizer, the log or the reply fails later with a 500.
OpenAI and Anthropic refuse such bodies with a 400; so do we, before any route sees them,
rather than replace the half with U+FFFD and silently change the prompt, a stop string or a
tool's arguments (the usual cause is a client cutting an emoji's surrogate pair in two).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from mlx_manager.api.middleware import replay_body, send_error
from mlx_manager.errors import InvalidRequest

# A surrogate escape (\uD800-\uDFFF) or a UTF-8-encoded surrogate (ED A0-BF ..): a cheap scan
# so that only bodies that may hold one are parsed here.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate_path(value: Any, path: str = "") -> str | None:
    """The dotted path (pydantic's style: `messages.0.content`) of the first string, key or
    value, holding a surrogate code point; None when there is none. Iterative: a body nested
    thousands deep must not exhaust the stack here."""
    pending: list[tuple[Any, str]] = [(value, path)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return where
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                if _SURROGATE.search(key):
                    return where  # the key itself cannot be named without the surrogate
                pending.append((child, f"{where}.{key}" if where else key))
        elif isinstance(item, list):
            pending.extend(
                (child, f"{where}.{i}" if where else str(i))
                for i, child in reversed(list(enumerate(item)))
            )
    return None


def surrogate_error(body: bytes) -> InvalidRequest | None:
    """The 400 for a JSON body holding a lone surrogate; None for any other body (an invalid
    one is left to the framework's own JSON error)."""
    if not _MAYBE_SURROGATE.search(body):
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's limit
        return None
    path = lone_surrogate_path(parsed)
    if path is None:
        return None  # e.g. a well-formed surrogate pair: valid text
    where = f"'{path}'" if path else "the request body"
    return InvalidRequest(
        f"Invalid value for {where}: the text holds a lone UTF-16 surrogate (U+D800 to U+DFFF), "
        "which is not valid Unicode. Send UTF-8 text, and escape a character outside the Basic "
        "Multilingual Plane as a complete surrogate pair.",
        param=path or None,
        code="invalid_unicode",
    )


class UnicodeGuardMiddleware:
    """Answers a JSON body holding a lone surrogate with a 400 in the caller's dialect.

    Sits inside BodyLimitMiddleware, which has already bounded and buffered the body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        content_type = dict(scope.get("headers", [])).get(b"content-type", b"")
        if content_type.startswith(b"multipart/"):
            await self.app(scope, receive, send)  # uploads: text fields are form-decoded
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, replay_body(chunks, message, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        error = surrogate_error(b"".join(chunks))
        if error is not None:
            await send_error(scope, send, error)
            return
        await self.app(scope, replay_body(chunks, None, receive), send)
