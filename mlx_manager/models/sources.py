"""Where a model's files come from: `[ALIAS=]PATH_OR_HF_ID` -> a local directory.

Local directories are used as they are; Hugging Face ids are resolved through the standard HF
cache (`HF_HUB_CACHE` / `HF_HOME`) with huggingface_hub, downloading only when the hub answers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

EMBEDDED = "embedded"

# The files mlx-lm needs; weights in other formats are never fetched (downloads/ uses it too).
ALLOW_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.py",
    "*.jinja",
    "tokenizer.model",
    "*.tiktoken",
    "*.txt",
]


class ModelSourceError(RuntimeError):
    """The model's files cannot be found or fetched; the message says why."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    model_id: str
    source: str  # a directory, an HF id, or EMBEDDED

    @property
    def is_embedded(self) -> bool:
        return self.source == EMBEDDED


def parse_model_spec(text: str) -> ModelSpec:
    """`alias=source` or `source`; without an alias the id is the HF id or directory name."""
    text = text.strip()
    alias, sep, rest = text.partition("=")
    if sep and alias and rest and not Path(text).expanduser().exists():
        return ModelSpec(alias.strip(), rest.strip())
    path = Path(text).expanduser()
    if path.is_dir():
        return ModelSpec(path.resolve().name, str(path.resolve()))
    return ModelSpec(text, text)


def resolve_model_dir(source: str, hub_timeout_s: float) -> Path:
    """A local directory holding the model, or ModelSourceError naming the problem."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSourceError(f"{path} is not a model directory: config.json is missing")
        return path.resolve()
    if path.is_absolute() or source.startswith((".", "~")) or source.count("/") != 1:
        raise ModelSourceError(
            f"model {source!r} is neither a local directory nor a Hugging Face id (owner/name)"
        )
    return _resolve_hf_id(source, hub_timeout_s)


def _resolve_hf_id(repo_id: str, hub_timeout_s: float) -> Path:
    try:
        return Path(
            snapshot_download(repo_id, local_files_only=True, allow_patterns=ALLOW_PATTERNS)
        )
    except LocalEntryNotFoundError:
        pass
    cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        raise ModelSourceError(
            f"model {repo_id!r} is not in the local Hugging Face cache ({cache}) and "
            "HF_HUB_OFFLINE is set"
        )
    try:
        HfApi().model_info(repo_id, timeout=hub_timeout_s)
    except Exception as exc:  # any failure here means we cannot download
        raise ModelSourceError(
            f"model {repo_id!r} is not in the local Hugging Face cache ({cache}) and the hub "
            f"is unreachable or does not know it: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return Path(snapshot_download(repo_id, allow_patterns=ALLOW_PATTERNS))
    except Exception as exc:
        raise ModelSourceError(f"downloading {repo_id!r} failed: {exc}") from exc
