"""What a model's chat template and vocabulary say it can do, read from its files only.

- **Tools**: the template renders a `tools` list itself, by the same test the server applies
  when it serves the model (tool_formats.supports_tools_natively). Models without it still
  take tools through the server's Hermes prompting; the badge says "native" or "prompted".
- **Thinking**: the vocabulary holds a thinking pair that mlx-lm splits into reasoning
  (`<think>`/`</think>` and the others its `_infer_thinking` knows), or the template writes
  `<think>` or switches on `enable_thinking`. Whether a client can switch it (the template
  reads `enable_thinking` or `reasoning_effort`, which the server sets from a request's
  `reasoning_effort` / `thinking`) is `thinking_toggle`.

The template is looked for where transformers and mlx-lm look: `chat_template.jinja`,
`chat_template.json`, and `tokenizer_config.json`'s `chat_template` (a string or a list of
named templates such as "default" and "tool_use").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mlx_manager.models.tool_formats import supports_tools_natively

# The thinking markers mlx-lm recognises in a vocabulary (tokenizer_utils._infer_thinking).
THINK_PAIRS = (
    ("<think>", "</think>"),
    ("<longcat_think>", "</longcat_think>"),
    ("<|think:start|>", "<|think:end|>"),
    ("<|channel>", "<channel|>"),
)
_TOGGLE = re.compile(r"\b(?:enable_thinking|reasoning_effort)\b")
_TEMPLATE_THINKS = re.compile(r"<think>|\benable_thinking\b|\breasoning_content\b")


@dataclass(frozen=True, slots=True)
class TemplateFeatures:
    has_template: bool
    native_tools: bool  # the template renders `tools` itself
    thinking: bool  # the model writes a thinking block the server can separate
    thinking_toggle: bool  # the template takes enable_thinking (a client can switch it)


def read_chat_template(path: Path) -> str:
    """Every chat template of the model directory, joined; "" when it ships none."""
    parts: list[str] = []
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        parts.append(_read_text(jinja))
    for name in ("chat_template.json", "tokenizer_config.json"):
        data = _read_json(path / name)
        parts += _templates_in(data.get("chat_template"))
    return "\n".join(p for p in parts if p)


def template_features(path: Path) -> TemplateFeatures:
    template = read_chat_template(path)
    tokens = _vocab_has_think_pair(path)
    return TemplateFeatures(
        has_template=bool(template),
        native_tools=bool(template)
        and supports_tools_natively(SimpleNamespace(chat_template=template)),
        thinking=tokens or bool(_TEMPLATE_THINKS.search(template)),
        thinking_toggle=bool(_TOGGLE.search(template)),
    )


def _templates_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):  # [{"name": "default", "template": "..."}, ...]
        return [
            t["template"]
            for t in value
            if isinstance(t, dict) and isinstance(t.get("template"), str)
        ]
    return []


def _vocab_has_think_pair(path: Path) -> bool:
    """A thinking pair among the tokens, found without parsing the (large) tokenizer.json."""
    added = _read_json(path / "tokenizer_config.json").get("added_tokens_decoder")
    contents = {
        str(t.get("content"))
        for t in (added.values() if isinstance(added, dict) else [])
        if isinstance(t, dict)
    }
    if any(start in contents and end in contents for start, end in THINK_PAIRS):
        return True
    try:
        raw = (path / "tokenizer.json").read_bytes()
    except OSError:
        return False
    return any(_quoted(start) in raw and _quoted(end) in raw for start, end in THINK_PAIRS)


def _quoted(token: str) -> bytes:
    return json.dumps(token).encode()


def _read_text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _read_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
