"""Prompts: token-exact random text, random ids, the server-rendered chat prompt, banned EOS.

Every benchmark that must generate exactly N tokens bans the stop tokens with a logit bias of
-100 (the most negative the OpenAI API accepts): over HTTP as the request's `logit_bias`,
in-process as mlx-lm's logits processor (the code the server uses for `logit_bias`).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BAN_BIAS = -100.0  # the most negative logit_bias the OpenAI API accepts
END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>", "</s>")
WORD = re.compile(r" [a-z]{2,12}")

SYSTEM_PROMPT = "You are a helpful assistant."
USER_PROMPT = (
    "Write a long, detailed story about a lighthouse keeper who finds a hidden library under "
    "the lighthouse. Describe every room, every book and every visitor, one after the other."
)
FILLER = (
    " Keep the tone calm and precise, name each character, and never stop before the story "
    "has reached its natural end."
)


def ban_bias(ids: list[int] | tuple[int, ...]) -> dict[str, float]:
    """A request's `logit_bias` banning `ids`."""
    return {str(i): BAN_BIAS for i in ids}


def ban_processors(ids: list[int] | tuple[int, ...]) -> list[Any]:
    """mlx-lm logits processors banning `ids` (what the server applies for `logit_bias`)."""
    from mlx_lm.sample_utils import make_logits_processors

    processors: list[Any] = make_logits_processors(logit_bias=dict.fromkeys(ids, BAN_BIAS))
    return processors


def random_ids(seed: int | str, n: int, low: int, high: int) -> list[int]:
    """`n` token ids drawn from [low, high), the same for the same seed."""
    rng = random.Random(seed)
    return [rng.randrange(low, high) for _ in range(n)]


def load_tokenizer(path: Path) -> Any:
    """transformers' AutoTokenizer (what mlx-lm and MLX Manager use) from a local dir."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


@dataclass(slots=True)
class Prompt:
    ids: list[int]
    text: str


class PromptBuilder:
    """Prompts of exactly N tokens: random sequences of single-token words.

    The pool holds the ids whose text is one lowercase word after a space (" house") and that
    encode back to exactly themselves, so concatenating N of them encodes to those N ids (the
    pre-tokenizer splits at each space). `specials` is how many tokens the tokenizer adds
    around a text when the server encodes it with special tokens (a BOS, typically).
    """

    def __init__(self, tokenizer_dir: Path) -> None:
        self.tokenizer_dir = tokenizer_dir
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.pool = self._word_pool()
        if len(self.pool) < 100:
            raise SystemExit(f"only {len(self.pool)} single-token words in {tokenizer_dir}")
        self.specials = len(self.encode("hello", special=True)) - len(self.encode("hello"))

    def encode(self, text: str, special: bool = False) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=special))

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids))

    def _word_pool(self) -> list[int]:
        vocab: dict[str, int] = self.tokenizer.get_vocab()
        pool = []
        for token_id in sorted(vocab.values()):
            text = self.decode([token_id])
            if WORD.fullmatch(text) and self.encode(text) == [token_id]:
                pool.append(token_id)
        return pool

    def ids(self, n: int, seed: int | str) -> list[int]:
        rng = random.Random(f"load_sweep:{seed}")
        return [rng.choice(self.pool) for _ in range(n)]

    def text_of(self, ids: list[int]) -> str:
        """The text of `ids`; checked to encode back to the same ids."""
        text = self.decode(ids)
        back = self.encode(text)
        if back != ids:
            raise RuntimeError(f"prompt of {len(ids)} ids re-encodes to {len(back)} ids")
        return text

    def prompt(self, ids: list[int]) -> Prompt:
        return Prompt(ids, self.text_of(ids))

    def prompts(self, n: int, tokens: int, tag: str) -> list[Prompt]:
        """`n` different prompts of `tokens` tokens as the server counts them (specials too)."""
        words = max(1, tokens - self.specials)
        return [self.prompt(self.ids(words, f"{tag}:{i}")) for i in range(n)]

    def eos_ids(self) -> list[int]:
        """Stop ids a server may use: EOS ids of config.json / generation_config.json /
        tokenizer_config.json, plus common end-of-turn tokens of this vocabulary."""
        ids = config_eos_ids(self.tokenizer_dir)
        eos = getattr(self.tokenizer, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
        return sorted(ids)


def config_eos_ids(model_dir: Path) -> set[int]:
    """`eos_token_id` (one or a list) of config.json and generation_config.json."""
    ids: set[int] = set()
    for name in ("config.json", "generation_config.json"):
        path = model_dir / name
        if path.is_file():
            value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, list):
                ids.update(int(v) for v in value)
    return ids


# ---------------------------------------------------------------- the server-rendered chat prompt


def chat_messages(repeat: int) -> list[dict[str, str]]:
    """The single-stream chat: a story request, lengthened by `repeat` filler sentences."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": USER_PROMPT + FILLER * repeat},
    ]


@dataclass(frozen=True, slots=True)
class PromptPlan:
    ids: list[int]
    stop_ids: list[int]  # EOS + end-of-turn ids the server stops on: all banned


def plan_prompt(path: Path, tokenizer: Any, messages: list[dict[str, str]]) -> PromptPlan:
    """The prompt exactly as the server renders it, and the ids the server would stop on."""
    from mlx_manager.models.families import detect_family

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    family = detect_family(config, path.name)
    ids = family.render_prompt(tokenizer, messages)
    stops = set(family.stop_token_ids(tokenizer)) | {int(i) for i in tokenizer.eos_token_ids}
    return PromptPlan(ids, sorted(stops))


def load_plan(path: Path, messages: list[dict[str, str]]) -> PromptPlan:
    """The tokenizer as `mlx_lm.load` builds it (EOS ids from config.json too), then the plan."""
    from mlx_lm.utils import load_tokenizer as mlx_lm_tokenizer

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    tokenizer = mlx_lm_tokenizer(path, eos_token_ids=config.get("eos_token_id"))
    return plan_prompt(path, tokenizer, messages)
