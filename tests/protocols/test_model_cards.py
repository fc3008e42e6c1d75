"""/v1/models lists each alias as a model of its own, pointing at the served model."""

from __future__ import annotations

from mlx_manager.protocols.model_cards import model_card, model_list
from mlx_manager.types import ModelInfo

SERVED = ModelInfo("SmolLM2", 1_700_000_000, 8192, "llama", "/m/SmolLM2")
ALIASES = {"claude-sonnet-4-6": "SmolLM2", "gpt-nope": "not-served", "SmolLM2": "SmolLM2"}


def test_openai_list_has_aliases_after_the_served_models() -> None:
    listed = model_list([SERVED], aliases=ALIASES)["data"]
    assert [(c["id"], c.get("alias_of")) for c in listed] == [
        ("SmolLM2", None),
        ("claude-sonnet-4-6", "SmolLM2"),
    ]
    assert listed[1]["context_length"] == 8192 and listed[1]["object"] == "model"


def test_anthropic_list_has_aliases_named_after_the_served_model() -> None:
    listed = model_list([SERVED], anthropic=True, aliases=ALIASES)
    assert [(c["id"], c["display_name"]) for c in listed["data"]] == [
        ("SmolLM2", "SmolLM2"),
        ("claude-sonnet-4-6", "SmolLM2"),
    ]
    assert listed["last_id"] == "claude-sonnet-4-6"


def test_one_card_by_alias_says_what_it_points_at() -> None:
    assert model_card("claude-sonnet-4-6", SERVED)["alias_of"] == "SmolLM2"
    assert "alias_of" not in model_card("SmolLM2", SERVED)
