"""Chat-family adapters, on tiny random-weight models of each family and on plain dicts."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx_lm
import pytest
from jinja2 import TemplateError

from mlx_manager.models.families import (
    CHATML,
    FAMILIES,
    ChatFamily,
    detect_family,
    fold_system_messages,
)
from tests.fixtures.tiny_models import SPECS, tiny_model_dirs

__all__ = ["tiny_model_dirs"]  # the session fixture, re-exported for pytest


@dataclass(frozen=True)
class Expect:
    family: str
    name: str  # a real checkpoint name, for the name fallback
    user_marker: str  # how the template opens a user turn
    end_of_turn: str
    folds_system: bool
    by_name: str | None = None  # the family its name alone implies, where it differs


EXPECT = {
    "llama": Expect(
        "llama",
        "meta-llama/Meta-Llama-3-8B-Instruct",
        "<|start_header_id|>user<|end_header_id|>",
        "<|eot_id|>",
        False,
    ),
    "smollm2": Expect(
        "llama",
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "<|im_start|>user",
        "<|im_end|>",
        False,
        by_name="chatml",  # right by name alone: SmolLM2 speaks ChatML
    ),
    "qwen": Expect("qwen", "Qwen/Qwen2.5-0.5B-Instruct", "<|im_start|>user", "<|im_end|>", False),
    "mistral": Expect("mistral", "mistralai/Mistral-7B-Instruct-v0.2", "[INST]", "</s>", True),
    "gemma": Expect("gemma", "google/gemma-2-2b-it", "<start_of_turn>user", "<end_of_turn>", True),
    "phi3": Expect("phi3", "microsoft/Phi-3-mini-4k-instruct", "<|user|>", "<|end|>", False),
}
ALL = sorted(SPECS)


def _load(path: Path) -> tuple[Any, Any]:
    result = mlx_lm.load(str(path))
    return result[0], result[1]


@pytest.fixture(scope="module")
def loaded(tiny_model_dirs: dict[str, Path]) -> dict[str, tuple[Any, Any]]:
    return {family: _load(path) for family, path in tiny_model_dirs.items()}


def _config(path: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((path / "config.json").read_text())
    return config


# --- detection -------------------------------------------------------------------------------


@pytest.mark.parametrize("tiny", ALL)
def test_detect_from_model_type(tiny: str, tiny_model_dirs: dict[str, Path]) -> None:
    assert detect_family(_config(tiny_model_dirs[tiny])).name == EXPECT[tiny].family


@pytest.mark.parametrize("tiny", ALL)
def test_detect_from_architectures_only(tiny: str, tiny_model_dirs: dict[str, Path]) -> None:
    config = _config(tiny_model_dirs[tiny])
    del config["model_type"]
    assert detect_family(config).name == EXPECT[tiny].family


@pytest.mark.parametrize("tiny", ALL)
def test_detect_from_name_only(tiny: str) -> None:
    expect = EXPECT[tiny]
    assert detect_family({}, expect.name).name == (expect.by_name or expect.family)


@pytest.mark.parametrize(
    ("config", "name", "family"),
    [
        ({"model_type": "qwen3_moe"}, "", "qwen"),
        ({"model_type": "qwen2_moe"}, "", "qwen"),
        ({"model_type": "mixtral"}, "", "mistral"),
        ({"model_type": "ministral3"}, "", "mistral"),
        ({"model_type": "gemma3_text"}, "", "gemma"),
        ({"model_type": "gemma3"}, "", "gemma"),
        ({"model_type": "phimoe"}, "", "phi3"),
        ({"model_type": "llama"}, "Qwen-imposter", "llama"),  # config beats the name
        ({"model_type": "olmo2"}, "", "chatml"),
        ({"model_type": "olmo2"}, "someone/phi3-finetune", "phi3"),
        ({"architectures": ["Gemma3ForConditionalGeneration"]}, "", "gemma"),
        ({"architectures": ["MistralForCausalLM"]}, "", "mistral"),
        ({"model_type": None, "architectures": None}, "", "chatml"),
        ({}, "mlx-community/Phi-3.5-mini-instruct-4bit", "phi3"),
        ({}, "unknown/model", "chatml"),
    ],
)
def test_detect_family_table(config: dict[str, Any], name: str, family: str) -> None:
    assert detect_family(config, name).name == family


# --- on the tiny models ----------------------------------------------------------------------


@pytest.mark.parametrize("tiny", ALL)
def test_render_prompt_matches_template_without_double_bos(
    tiny: str, loaded: dict[str, tuple[Any, Any]]
) -> None:
    _, tokenizer = loaded[tiny]
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = FAMILIES[EXPECT[tiny].family].render_prompt(tokenizer, messages)
    text = tokenizer.decode(ids)
    assert EXPECT[tiny].user_marker in text
    assert "What is the capital of France?" in text
    # transformers' own tokenize=True path: it also encodes without special tokens.
    assert ids == tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    bos = SPECS[tiny].bos
    if SPECS[tiny].add_bos:
        bos_id = tokenizer.convert_tokens_to_ids(bos)
        assert ids[0] == bos_id
        assert ids.count(bos_id) == 1
        # Encoding the rendered text with special tokens is what would double it.
        assert tokenizer.encode(tokenizer.decode(ids))[:2] == [bos_id, bos_id]


@pytest.mark.parametrize("tiny", ALL)
def test_system_and_developer_messages(tiny: str, loaded: dict[str, tuple[Any, Any]]) -> None:
    _, tokenizer = loaded[tiny]
    messages = [
        {"role": "developer", "content": "Be terse."},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
    ]
    text = tokenizer.decode(FAMILIES[EXPECT[tiny].family].render_prompt(tokenizer, messages))
    if EXPECT[tiny].folds_system:
        assert text.count(EXPECT[tiny].user_marker) == 1
        assert "Be terse.\n\nAnswer in French.\n\nHi" in text
    else:
        assert "Be terse.\n\nAnswer in French." in text
        assert "Answer in French.\n\nHi" not in text
        assert "system" in text
    assert "developer" not in text


@pytest.mark.parametrize("tiny", ALL)
def test_stop_token_ids(tiny: str, loaded: dict[str, tuple[Any, Any]]) -> None:
    _, tokenizer = loaded[tiny]
    stops = FAMILIES[EXPECT[tiny].family].stop_token_ids(tokenizer)
    assert tokenizer.convert_tokens_to_ids(EXPECT[tiny].end_of_turn) in stops
    assert set(tokenizer.eos_token_ids) <= stops


@pytest.mark.parametrize("tiny", ALL)
def test_generate_a_few_tokens(tiny: str, loaded: dict[str, tuple[Any, Any]]) -> None:
    model, tokenizer = loaded[tiny]
    family = FAMILIES[EXPECT[tiny].family]
    prompt = family.render_prompt(tokenizer, [{"role": "user", "content": "Hello"}])
    tokens = [r.token for r in mlx_lm.stream_generate(model, tokenizer, prompt, max_tokens=8)]
    assert 1 <= len(tokens) <= 8
    assert all(0 <= t < len(tokenizer) for t in tokens)


def test_mistral_template_raising_on_system_is_folded(loaded: dict[str, tuple[Any, Any]]) -> None:
    _, tokenizer = loaded["mistral"]
    family = FAMILIES["mistral"]
    assert family.system_role  # decided by the template, not the family
    messages = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]
    assert tokenizer.decode(family.render_prompt(tokenizer, messages)) == (
        "<s>[INST] Be terse.\n\nHi [/INST]"
    )


def test_template_errors_without_system_are_raised(loaded: dict[str, tuple[Any, Any]]) -> None:
    _, tokenizer = loaded["mistral"]
    with pytest.raises(TemplateError, match="alternate"):
        FAMILIES["mistral"].render_prompt(tokenizer, [{"role": "assistant", "content": "Hi"}])


def test_add_generation_prompt_false(loaded: dict[str, tuple[Any, Any]]) -> None:
    _, tokenizer = loaded["qwen"]
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    ids = FAMILIES["qwen"].render_prompt(tokenizer, messages, add_generation_prompt=False)
    assert tokenizer.decode(ids).endswith("<|im_start|>assistant\nHello<|im_end|>\n")


@pytest.mark.parametrize("tiny", ["llama", "gemma", "qwen"])
def test_default_template_when_tokenizer_has_none(
    tiny: str, tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    path = shutil.copytree(tiny_model_dirs[tiny], tmp_path / tiny)
    config_file = path / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    del config["chat_template"]
    config_file.write_text(json.dumps(config))
    _, tokenizer = _load(path)
    assert tokenizer.chat_template is None
    family = FAMILIES[EXPECT[tiny].family]
    text = tokenizer.decode(family.render_prompt(tokenizer, [{"role": "user", "content": "Hi"}]))
    assert EXPECT[tiny].user_marker in text
    assert tokenizer.convert_tokens_to_ids(EXPECT[tiny].end_of_turn) in family.stop_token_ids(
        tokenizer
    )


# --- stop ids from the template, on a stand-in tokenizer ---------------------------------------


@dataclass
class FakeTokenizer:
    vocab: dict[str, int]
    chat_template: str | None
    eos_token_ids: frozenset[int] = frozenset({0})

    def get_vocab(self) -> dict[str, int]:
        return self.vocab


VOCAB = {"<eos>": 0, "<|im_end|>": 1, "<|end|>": 2, "<|eot_id|>": 3, "</s>": 4}


def test_llama_typed_model_with_chatml_template_stops_on_im_end() -> None:
    tokenizer = FakeTokenizer(VOCAB, "<|im_start|>{{ m }}<|im_end|>")
    assert FAMILIES["llama"].stop_token_ids(tokenizer) == {0, 1, 3, 4}


def test_ambiguous_end_markers_in_template_are_not_stops() -> None:
    # gpt-oss writes <|end|> between the channels of one reply.
    tokenizer = FakeTokenizer(VOCAB, "<|start|>assistant<|channel|>analysis<|end|>")
    assert CHATML.stop_token_ids(tokenizer) == {0, 1}


def test_missing_stop_strings_are_skipped() -> None:
    tokenizer = FakeTokenizer({"<eos>": 0}, None)
    assert FAMILIES["phi3"].stop_token_ids(tokenizer) == {0}


# --- prepare_messages on plain dicts ----------------------------------------------------------


def test_developer_maps_to_system_and_consecutive_systems_merge() -> None:
    messages = [
        {"role": "developer", "content": "A"},
        {"role": "system", "content": "B"},
        {"role": "user", "content": "Q"},
        {"role": "system", "content": "C"},
        {"role": "assistant", "content": "R"},
    ]
    before = copy.deepcopy(messages)
    out = FAMILIES["llama"].prepare_messages(messages)
    assert out == [
        {"role": "system", "content": "A\n\nB"},
        {"role": "user", "content": "Q"},
        {"role": "system", "content": "C"},
        {"role": "assistant", "content": "R"},
    ]
    assert messages == before
    assert all(o is not m for o in out for m in messages)


def test_fold_system_into_first_user_turn() -> None:
    messages = [
        {"role": "system", "content": "S1"},
        {"role": "developer", "content": "S2"},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    before = copy.deepcopy(messages)
    assert FAMILIES["gemma"].prepare_messages(messages) == [
        {"role": "user", "content": "S1\n\nS2\n\nQ1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    assert messages == before


def test_fold_later_system_into_next_user_turn_and_trailing_system_becomes_user() -> None:
    messages = [
        {"role": "user", "content": "Q1"},
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q2"},
        {"role": "system", "content": "T"},
    ]
    assert fold_system_messages(messages) == [
        {"role": "user", "content": "Q1"},
        {"role": "user", "content": "S\n\nQ2"},
        {"role": "user", "content": "T"},
    ]


def test_fold_system_only_and_part_lists() -> None:
    family = ChatFamily("test", (), system_role=False)
    assert family.prepare_messages([{"role": "system", "content": "S"}]) == [
        {"role": "user", "content": "S"}
    ]
    parts = [{"type": "text", "text": "Q"}, {"type": "image_url", "image_url": {"url": "x"}}]
    system = [{"type": "text", "text": "S"}]
    out = family.prepare_messages(
        [{"role": "system", "content": system}, {"role": "user", "content": parts}]
    )
    assert out == [{"role": "user", "content": [{"type": "text", "text": "S\n\n"}, *parts]}]
    assert parts[0] == {"type": "text", "text": "Q"}


def test_other_keys_and_tool_messages_pass_through() -> None:
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]}
    tool = {"role": "tool", "content": "42", "tool_call_id": "1"}
    out = FAMILIES["gemma"].prepare_messages([{"role": "user", "content": "Q"}, call, tool])
    assert out[1:] == [call, tool]
    assert out[1] is not call


class _TemplateTokenizer:
    """Just enough of a tokenizer to render a Jinja chat template (raise_exception included)."""

    def __init__(self, template: str) -> None:
        self.chat_template = template

    def apply_chat_template(
        self, messages: list[dict[str, Any]], *, tokenize: bool, add_generation_prompt: bool
    ) -> str:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment()
        env.globals["raise_exception"] = raise_exception
        return env.from_string(self.chat_template).render(messages=messages)


# Takes a system turn only first, as Llama 2's and Mistral v0.3's templates do.
LEADING_SYSTEM_ONLY = (
    "{% for m in messages %}"
    "{% if m.role == 'system' and not loop.first %}{{ raise_exception('system must be first') }}"
    "{% endif %}[{{ m.role }}]{{ m.content }}{% endfor %}"
)
MID_CHAT = [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "U1"},
    {"role": "assistant", "content": "A1"},
    {"role": "system", "content": "Reminder"},
    {"role": "user", "content": "U2"},
]


def test_mid_conversation_system_is_rendered_in_place_where_the_template_allows() -> None:
    tokenizer = _TemplateTokenizer(
        "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
    )
    text = CHATML.render_text(tokenizer, MID_CHAT)
    assert text == "[system]S[user]U1[assistant]A1[system]Reminder[user]U2"


def test_mid_conversation_system_folds_into_the_next_user_turn_keeping_the_leading_one() -> None:
    text = CHATML.render_text(_TemplateTokenizer(LEADING_SYSTEM_ONLY), MID_CHAT)
    assert text == "[system]S[user]U1[assistant]A1[user]Reminder\n\nU2"
