"""The body bound of a local text model: context x the longest token's characters of prompt
text, beyond an allowance for what is not prompt text; none for other models."""

from __future__ import annotations

from pathlib import Path

from mlx_manager.frontend.body_bound import (
    ALLOWANCE_BYTES,
    BIAS_BYTES,
    STRUCTURE_BYTES,
    BodyCounts,
    body_bound,
    cannot_fit,
    min_text_chars,
)
from mlx_manager.models.card import ModelCard
from mlx_manager.models.detection import ModelType
from mlx_manager.models.families import detect_family


def card(
    context: int = 2048,
    max_token_chars: int | None = 38,
    vocabulary: int = 518,
    model_type: ModelType = ModelType.TEXT,
) -> ModelCard:
    return ModelCard(
        model_id="tiny",
        path=Path("tiny"),
        tokenizer=[None] * vocabulary,  # len() is all the bound reads
        family=detect_family({}, "tiny"),
        context_length=context,
        stop_token_ids=frozenset(),
        model_type=model_type,
        max_token_chars=max_token_chars,
    )


def test_the_bound_is_context_times_the_longest_token_plus_the_allowance() -> None:
    bound = body_bound(card())
    assert bound is not None
    assert bound.text_chars == 2048 * 38
    assert bound.allowance == ALLOWANCE_BYTES + STRUCTURE_BYTES * 2048 + BIAS_BYTES * 518
    assert bound.plain_bytes == bound.text_chars + bound.allowance


def test_no_bound_without_a_measured_vocabulary_or_for_images_and_embeddings() -> None:
    assert body_bound(card(max_token_chars=None)) is None
    assert body_bound(card(model_type=ModelType.VISION)) is None
    assert body_bound(card(model_type=ModelType.EMBEDDINGS)) is None


def test_whitespace_escapes_and_multibyte_characters_count_as_least_text() -> None:
    plain = BodyCounts(size=10_000, whitespace=0, backslashes=0, high_bytes=0)
    assert min_text_chars(plain, 1000) == 9000
    # "é" is 2 bytes for 1 character: 1/4 counted per byte, rounded so the count stays lower.
    assert min_text_chars(BodyCounts(10_000, 0, 0, 2), 1000) == 9000 - 2
    assert min_text_chars(BodyCounts(10_000, 100, 10, 0), 1000) == 9000 - 100 - 60


def test_the_edge_of_the_bound() -> None:
    bound = body_bound(card())
    assert bound is not None
    at = BodyCounts(bound.plain_bytes, 0, 0, 0)
    under = BodyCounts(bound.plain_bytes - 1, 0, 0, 0)
    assert cannot_fit(bound, at) and not cannot_fit(bound, under)
    # One escape more and the same size no longer proves enough text.
    assert not cannot_fit(bound, BodyCounts(bound.plain_bytes + 5, 0, 1, 0))
