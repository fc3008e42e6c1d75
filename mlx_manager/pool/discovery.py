"""Finding models on disk: below configured model directories and in the HF cache.

A model directory is one holding a config.json and at least one .safetensors file. Below a
`--model-dir` its id is its path relative to that directory (`org/name`); in the Hugging Face
cache it is the repo id (huggingface_hub's cache scanner reads the cache layout).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, scan_cache_dir
from huggingface_hub.errors import CacheNotFound

log = logging.getLogger(__name__)

MAX_DEPTH = 3
_SKIP_DIRS = {".git", "__pycache__", ".cache", "node_modules"}


@dataclass(frozen=True, slots=True)
class Found:
    model_id: str
    path: Path
    size_bytes: int | None = None  # known without walking the directory (HF cache)


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def scan_model_dir(root: Path, max_depth: int = MAX_DEPTH) -> list[Found]:
    """Model directories below `root` (root itself counts, named after itself), sorted by id."""
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"model directory {root} does not exist")
    if is_model_dir(root):
        return [Found(root.name, root)]
    found: list[Found] = []
    for current, dirs, _files in os.walk(root, followlinks=True):
        here = Path(current)
        depth = len(here.relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS and not d.startswith("."))
        if here != root and is_model_dir(here):
            found.append(Found(here.relative_to(root).as_posix(), here))
            dirs[:] = []  # a model's own subfolders are not models
        elif depth >= max_depth:
            dirs[:] = []
    return sorted(found, key=lambda f: f.model_id)


def scan_hf_cache(cache_dir: Path | None = None) -> list[Found]:
    """Model repos of the HF cache with an MLX-loadable snapshot (newest, or `main`'s)."""
    try:
        info = scan_cache_dir(cache_dir or constants.HF_HUB_CACHE)
    except CacheNotFound:
        return []
    found: list[Found] = []
    for repo in info.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        revisions = sorted(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified))
        revision = revisions[-1]
        if is_model_dir(revision.snapshot_path):
            found.append(Found(repo.repo_id, revision.snapshot_path, revision.size_on_disk))
    for warning in info.warnings:
        log.debug("HF cache: %s", warning)
    return sorted(found, key=lambda f: f.model_id)
