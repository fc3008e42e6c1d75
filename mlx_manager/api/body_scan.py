"""What a JSON request body's raw bytes tell cheaply, chunk by chunk, without parsing it: the
model names it may ask for, and how many of its bytes may be escapes or multi-byte characters.

Parsing a 15 MiB body is ~50 ms in one C call that holds the GIL (json.loads): the event loop,
and every stream on it, stops meanwhile. These scans are `bytes.find` / `bytes.count` /
`bytes.isascii` per chunk as it arrives (C loops at memory speed, a few microseconds per
64 KiB chunk), so a body that cannot fit its model (frontend/body_bound.py) is refused before
anything parses it.

Model names: in JSON's raw bytes a `"` inside a string is always escaped (`\\"`), so the bytes
`"model"` followed by `:` and a string can only be a real key named `model` with a string value
(or, in a body that is not valid JSON, anything: such a body is refused later whatever we do).
Every such key anywhere is a candidate (nested ones too: `metadata.model`, a tool's arguments
are escaped strings and never match); the top-level `model` the route reads is among them.
The scan reports `ambiguous` (no name can be trusted) where a key could spell `model` in a way
these bytes do not show: a `\\u006X` escape anywhere (a letter of `model` escaped, e.g.
`"mod\\u0065l"`, which json.loads reads as `model`), a UTF-16/32 body (json.loads detects the
encoding from the first bytes), or a `"model":` whose value is cut by unusual whitespace or a
name too long to be one. An ambiguous scan never refuses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from mlx_manager.frontend.body_bound import BodyCounts

KEY = b'"model"'
_SPACE = rb"[ \t\r\n]{0,64}"
# The key, then: a colon (None: the bytes were a string value "model", not a key) and the
# first byte of its value (whitespace there: more whitespace than we follow).
_AFTER_KEY = re.compile(KEY + _SPACE + rb"(:" + _SPACE + rb")?(.)", re.DOTALL)
_MAX_NAME_BYTES = 1024  # a name is at most 256 characters (protocols/fields.py)
_NAME = re.compile(rb'"(?:[^"\\\x00-\x1f]|\\.){0,%d}"' % _MAX_NAME_BYTES)
# The longest a candidate can be: the key, the widest whitespace and name (escapes: 2 bytes).
_WINDOW = len(KEY) + 64 + 1 + 64 + 2 + 2 * _MAX_NAME_BYTES
# A letter of "model" written as a \u escape (m o d e l = U+006D U+006F U+0064 U+0065 U+006C).
_ESCAPED_LETTER = b"\\u006"
_KEEP = len(KEY) - 1  # bytes kept between chunks: a key or an escape cut by the chunk
_HIGH_BYTES = bytes(range(0x80, 0x100))
# Deleted to count the plain bytes (printable ASCII but the backslash) in one pass.
_NOT_PLAIN = b" \t\r\n\\" + _HIGH_BYTES
# Keys are found by hopping from quote to quote (memchr: ~0.5 ms over a 15 MiB prompt of
# prose); past this many quotes in a chunk (code, escaped quotes) by re's literal search
# (~9 ms over 15 MiB; bytes.find(KEY) is ~17 ms).
_QUOTE_HOPS = 64
_KEY_SEARCH = re.compile(re.escape(KEY))
_ESCAPE_SEARCH = re.compile(re.escape(_ESCAPED_LETTER))
_MAX_CANDIDATES = 16  # more distinct names than this: ambiguous (no body needs so many)


@dataclass(slots=True)
class BodyScan:
    """Feed a body's chunks in order, then `finish()`; read the fields after."""

    size: int = 0
    backslashes: int = 0  # every escape sequence starts with one
    high_bytes: int = 0  # bytes >= 0x80: the bytes of multi-byte UTF-8 characters
    whitespace: int = 0  # JSON's whitespace bytes (in a string only a space is raw)
    names: set[str] = field(default_factory=set)
    ambiguous: bool = False
    _carry: bytes = b""  # the tail of the bytes seen that a candidate may still start in
    _head: bytes = b""  # the first four bytes (the encoding json.loads will detect)

    def feed(self, chunk: bytes) -> None:
        if len(self._head) < 4:
            self._head = (self._head + chunk)[:4]
        self.size += len(chunk)
        # Each count is one C pass over the chunk, and the rarer ones only where needed.
        plain = len(chunk.translate(None, _NOT_PLAIN))
        backslashes = chunk.count(b"\\") if b"\\" in chunk else 0
        high = 0 if chunk.isascii() else len(chunk) - len(chunk.translate(None, _HIGH_BYTES))
        self.backslashes += backslashes
        self.high_bytes += high
        self.whitespace += len(chunk) - plain - backslashes - high
        if not self.ambiguous:
            escapes = backslashes > 0 or b"\\" in self._carry
            self._scan(self._carry + chunk, final=False, escapes=escapes)

    def counts(self) -> BodyCounts:
        return BodyCounts(self.size, self.whitespace, self.backslashes, self.high_bytes)

    def finish(self) -> None:
        if _not_utf8(self._head):
            self.ambiguous = True
        if not self.ambiguous and self._carry:
            self._scan(self._carry, final=True, escapes=True)
        self._carry = b""

    def _scan(self, data: bytes, *, final: bool, escapes: bool) -> None:
        if escapes and _ESCAPE_SEARCH.search(data) is not None:
            self.ambiguous = True
            return
        self._carry = data[-_KEEP:]
        for at in _keys(data):
            if not final and len(data) - at < _WINDOW:
                self._carry = data[at:]  # a candidate the chunk may cut: read it with the next
                return
            self._candidate(data, at)

    def _candidate(self, data: bytes, at: int) -> None:
        head = _AFTER_KEY.match(data, at)
        if head is None:
            return  # the body ends after the key: not JSON
        first = head.group(2)
        if first in b" \t\r\n":
            self.ambiguous = True  # more whitespace than we follow: cannot read the value
        elif head.group(1) is None or first != b'"':
            return  # a string value "model" (no colon), or a key with a non-string value
        else:
            self._name(data, head.end(2) - 1)

    def _name(self, data: bytes, at: int) -> None:
        found = _NAME.match(data, at)
        try:
            name = json.loads(found.group(0)) if found is not None else None
        except ValueError:  # a bad escape, or not UTF-8: not JSON
            name = None
        if not isinstance(name, str):
            self.ambiguous = True  # a name longer than any we serve, or unreadable
            return
        self.names.add(name)
        if len(self.names) > _MAX_CANDIDATES:
            self.ambiguous = True


def _keys(data: bytes) -> Iterator[int]:
    """Where KEY starts in `data`, in order."""
    at = data.find(b'"')
    for _ in range(_QUOTE_HOPS):
        if at < 0:
            return
        if data.startswith(KEY, at):
            yield at
        at = data.find(b'"', at + 1)
    if at >= 0:
        yield from (found.start() for found in _KEY_SEARCH.finditer(data, at))


def _not_utf8(start: bytes) -> bool:
    """json.loads reads a body as UTF-16 or UTF-32 when its first bytes say so (a NUL among the
    first four, or their byte-order marks); our byte patterns assume UTF-8."""
    return b"\x00" in start[:4] or start.startswith((b"\xff\xfe", b"\xfe\xff"))
