"""The longest-token bound never claims fewer characters per token than a real encode uses."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from mlx_lm.utils import load_tokenizer

from mlx_manager.models.token_bounds import longest_token_chars, min_tokens_for


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir: Path) -> Any:
    return load_tokenizer(smollm2_dir)


@pytest.mark.parametrize(
    "text",
    [
        " " * 5000,
        "#" * 5000,
        "\n" + " " * 4000,
        "東京🙂émigré " * 300,
        "".join(random.Random(0).choice("ab \n\t#=-_") for _ in range(6000)),
    ],
)
def test_the_bound_is_below_the_real_token_count(tokenizer: Any, text: str) -> None:
    bound = min_tokens_for(len(text), longest_token_chars(tokenizer))
    assert 0 < bound <= len(tokenizer.encode(text, add_special_tokens=False))


def test_no_vocabulary_no_bound() -> None:
    assert longest_token_chars(object()) is None
    assert min_tokens_for(10**9, None) == 0
