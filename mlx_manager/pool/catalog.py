"""What may be served: the allow-list of models, with the metadata `/v1/models` shows.

Only models named here are ever loaded: the `--model` entries, the model directories found
below each `--model-dir`, and (with `--scan-hf-cache`) the MLX models of the local Hugging
Face cache. A request names a model by id; it can never make the server open a path.
Configured `--model` ids win over discovered ones, then `--model-dir`s in order, then the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from mlx_manager.models.detection import ModelType, detect_model_dir, read_config
from mlx_manager.models.families import detect_family
from mlx_manager.models.loaded import FALLBACK_CONTEXT_LENGTH, context_length_of
from mlx_manager.pool.budget import dir_size_bytes
from mlx_manager.pool.discovery import Found, scan_hf_cache, scan_model_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    model_id: str
    path: Path
    origin: str  # "model" (--model), "embedded" (the built-in default), "model-dir", "hf-cache",
    # "download" (a finished download)
    model_type: ModelType
    context_length: int
    family: str
    size_bytes: int
    created: int


def describe(
    model_id: str,
    path: Path,
    origin: str,
    context_override: int | None = None,
    size_bytes: int | None = None,
) -> CatalogEntry:
    """Read a model directory's metadata (config.json, type, size); never loads weights."""
    config = read_config(path) or {}
    try:
        created = int((path / "config.json").stat().st_mtime)
    except OSError:
        created = 0
    context = context_length_of(config) if config else FALLBACK_CONTEXT_LENGTH
    return CatalogEntry(
        model_id=model_id,
        path=path,
        origin=origin,
        model_type=detect_model_dir(path, model_id.rsplit("/", 1)[-1]),
        context_length=context_override or context,
        family=detect_family(config, model_id).name,
        size_bytes=dir_size_bytes(path) if size_bytes is None else size_bytes,
        created=created,
    )


class Catalog:
    def __init__(self, entries: Iterable[CatalogEntry] = ()) -> None:
        self._entries: dict[str, CatalogEntry] = {}
        for entry in entries:
            known = self._entries.get(entry.model_id)
            if known is not None:
                if known.path.resolve() != entry.path.resolve():
                    log.warning(
                        "model id %s found twice; serving %s, not %s",
                        entry.model_id,
                        known.path,
                        entry.path,
                    )
                continue
            self._entries[entry.model_id] = entry

    def add(self, entry: CatalogEntry) -> bool:
        """Serve one more model (a finished download) or its newer snapshot. Only an entry
        found in the HF cache or downloaded gives way; a configured (`--model`, the embedded
        one) or `--model-dir` model of the same id elsewhere keeps the id (False)."""
        known = self._entries.get(entry.model_id)
        if (
            known is not None
            and known.origin not in ("hf-cache", "download")
            and known.path.resolve() != entry.path.resolve()
        ):
            log.warning(
                "model id %s is served from %s; not replacing it with %s",
                entry.model_id,
                known.path,
                entry.path,
            )
            return False
        self._entries[entry.model_id] = entry
        return True

    def get(self, model_id: str) -> CatalogEntry | None:
        return self._entries.get(model_id)

    def ids(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[CatalogEntry]:
        return list(self._entries.values())

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def build_catalog(
    configured: Iterable[tuple[str, Path]],
    model_dirs: Iterable[Path] = (),
    hf_cache: bool = False,
    context_override: int | None = None,
    embedded: Collection[str] = (),
) -> Catalog:
    """Configured (id, resolved dir) pairs first (`embedded` names those that are the built-in
    default model), then discovered models. Reads only metadata."""
    entries = [
        describe(i, p, "embedded" if i in embedded else "model", context_override)
        for i, p in configured
    ]
    for root in model_dirs:
        entries += _described(scan_model_dir(root), "model-dir", context_override)
    if hf_cache:
        entries += _described(scan_hf_cache(), "hf-cache", context_override)
    return Catalog(entries)


def _described(found: list[Found], origin: str, context_override: int | None) -> list[CatalogEntry]:
    return [describe(f.model_id, f.path, origin, context_override, f.size_bytes) for f in found]
