"""Recent responses' conversations, so ``previous_response_id`` can carry one on.

The Responses API is served statelessly; this bounded in-memory store keeps, per response
id, the conversation it ended (input and output turns as chat messages, without its
``instructions``). The least recently used entries go first when either bound is passed:
`max_entries` responses or `max_chars` characters of text in all. Nothing survives a restart;
a forgotten id is a 404 (``previous_response_not_found``), as OpenAI answers for one it lacks.
"""

from __future__ import annotations

from collections import OrderedDict

from mlx_manager.errors import NotFound, shorten
from mlx_manager.types import ChatMessage

Conversation = tuple[ChatMessage, ...]

DEFAULT_MAX_ENTRIES = 1000
DEFAULT_MAX_CHARS = 64 * 1024 * 1024


def conversation_chars(conversation: Conversation) -> int:
    return sum(
        len(m.content)
        + sum(len(c.arguments) + len(c.name) for c in m.tool_calls)
        + sum(len(image.url) for image in m.images)
        for m in conversation
    )


class ResponseStore:
    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        self._max_entries = max_entries
        self._max_chars = max_chars
        self._entries: OrderedDict[str, tuple[Conversation, int]] = OrderedDict()
        self._chars = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, response_id: str, conversation: Conversation) -> None:
        size = conversation_chars(conversation)
        if size > self._max_chars:
            return  # larger than the whole store: kept by no one
        self._drop(response_id)
        self._entries[response_id] = (conversation, size)
        self._chars += size
        while len(self._entries) > self._max_entries or self._chars > self._max_chars:
            self._drop(next(iter(self._entries)))

    def get(self, response_id: str) -> Conversation:
        """The conversation response `response_id` ended; 404 if it is not (or no longer)
        kept."""
        entry = self._entries.get(response_id)
        if entry is None:
            raise NotFound(
                f"Previous response with id '{shorten(response_id)}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        self._entries.move_to_end(response_id)
        return entry[0]

    def _drop(self, response_id: str) -> None:
        entry = self._entries.pop(response_id, None)
        if entry is not None:
            self._chars -= entry[1]
