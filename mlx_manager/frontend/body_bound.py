"""How large a JSON request body for a local text model can be and still fit its context: a
bound to refuse a giant body (413) from its raw bytes, before anything parses it.

Why it never refuses a request the model could serve. The server already refuses, before
tokenizing, any prompt of at least `context_length x max_token_chars` characters
(frontend/prompt_size.py: no token covers more than `max_token_chars` characters, so such a text
needs at least a context's worth of tokens). Call that `text_chars`. A body is refused here
only when its bytes prove it carries at least `text_chars` characters of prompt text:

- The characters of all its strings are at least `size - allowance - whitespace -
  6 x backslashes - 3/4 x high_bytes`, counting from the raw bytes (api/body_scan.py): JSON's
  whitespace is not counted at all (indentation, padding; a space in a prompt is text, so this
  only undercounts); every other byte outside the strings' text (keys, punctuation, numbers,
  and fields that are not prompt text) is within `allowance`; in the strings, a plain ASCII
  byte is one character; an escape starts with a backslash and takes at most 6 bytes
  (`\\uXXXX`; a surrogate pair is 12 bytes and 2 backslashes), counted as no character; a
  multi-byte UTF-8 character is 2 to 4 bytes, all of them >= 0x80, for one character (so at
  least 1/4 of a character per such byte).
- Those strings' text is in the prompt the server counts: message contents, system prompts,
  instructions, completions' prompts, tool definitions, calls and results, all rendered into the
  prompt text that prompt_size.py bounds. (Images are base64 text, but a text model refuses
  them with a 400 whatever their size, frontend/client.py.)
- `allowance` covers what is not: ALLOWANCE_BYTES (1 MiB: stop strings, at most 4 x 1,000
  characters, or 64 for Anthropic; response-format schemas, whose strings OpenAI caps at
  120,000 characters; hints accepted and ignored, protocols/field_policy.py: metadata, a
  tool's input_examples, a Responses reasoning item's encrypted content), STRUCTURE_BYTES per
  context token (each message, content part or tool call the template renders adds a token
  or more, and its keys, role, type and punctuation take fewer bytes; a token id of a
  completions prompt, a number, far fewer) and BIAS_BYTES per vocabulary entry (a
  `logit_bias` entry for every token id).

So a body over the bound holds at least `text_chars` characters of prompt, which the server
would refuse anyway (400 context_length_exceeded) after paying to parse it. What the argument
assumes is that no more than `allowance` of a body is neither whitespace, prompt text nor the
fields above: a request carrying megabytes of text that its template drops (a past turn's
reasoning, say) could be refused here though it would fit. The margin is wider than it looks:
`max_token_chars` is twice the longest vocabulary entry (~160 characters for SmolLM2's
tokenizer) where real text averages ~4 characters a token, so a prompt that fits is ~1/40 of
`text_chars`, and such a body needs the rest, ~97% of `text_chars`, in dropped text too.

Only a local text model has a bound: a vision model's body carries images (base64, not prompt
text), an upstream's context is unknown, and a model not loaded has no tokenizer to measure.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlx_manager.models.card import ModelCard
from mlx_manager.models.detection import ModelType

ALLOWANCE_BYTES = 1024 * 1024
STRUCTURE_BYTES = 64  # per context token: `{"role":"assistant","content":""},` is 35
BIAS_BYTES = 32  # `"123456": -100.0, ` with indentation
ESCAPE_BYTES = 6  # the longest escape of one UTF-16 unit: \uXXXX


@dataclass(frozen=True, slots=True)
class BodyBound:
    model_id: str
    context_length: int
    text_chars: int  # a prompt this long cannot fit (context x the longest token's characters)
    allowance: int  # bytes of a body that may be other than prompt text

    @property
    def plain_bytes(self) -> int:
        """The bound for a body of ASCII text with no escapes or whitespace (its least)."""
        return self.text_chars + self.allowance


def body_bound(card: ModelCard) -> BodyBound | None:
    """The bound of a loaded model's bodies; None where none is sound (see the module doc)."""
    if card.model_type is not ModelType.TEXT or not card.max_token_chars:
        return None
    try:
        vocabulary = len(card.tokenizer)
    except TypeError:  # a tokenizer without a size: assume a large vocabulary
        vocabulary = 1 << 20
    context = card.context_length
    allowance = ALLOWANCE_BYTES + STRUCTURE_BYTES * context + BIAS_BYTES * vocabulary
    return BodyBound(card.model_id, context, context * card.max_token_chars, allowance)


@dataclass(frozen=True, slots=True)
class BodyCounts:
    """What a body's raw bytes hold (api/body_scan.py counts them)."""

    size: int
    whitespace: int  # spaces, tabs, CR, LF
    backslashes: int
    high_bytes: int  # >= 0x80


def min_text_chars(counts: BodyCounts, allowance: int) -> int:
    """At least how many characters of prompt text a body holds, given `allowance` bytes of
    anything else (see the module doc)."""
    escaped = ESCAPE_BYTES * counts.backslashes
    multibyte = (3 * counts.high_bytes + 3) // 4  # rounded up: the count stays a lower bound
    return counts.size - allowance - counts.whitespace - escaped - multibyte


def cannot_fit(bound: BodyBound, counts: BodyCounts) -> bool:
    """Whether a body holds more prompt text than the model can take."""
    return min_text_chars(counts, bound.allowance) >= bound.text_chars
