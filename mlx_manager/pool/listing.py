"""`mlx-manager models`: what the server would serve (from the settings) or serves (`--url`).

From the settings nothing is downloaded, converted or loaded: a `--model` that is not on disk
yet is listed as such. With `--url` the running server's `/v1/models` answers, loaded state
included.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

from mlx_manager.config import Settings
from mlx_manager.models.default_model import embedded_model_dir
from mlx_manager.models.loaded import default_spec
from mlx_manager.models.sources import ModelSpec, parse_model_spec
from mlx_manager.pool.catalog import build_catalog


@dataclass(frozen=True, slots=True)
class ModelRow:
    id: str
    type: str
    context_length: int | None
    size_bytes: int | None
    loaded: bool | None  # None: unknown (no server asked)
    pinned: bool
    where: str


def rows_from_settings(settings: Settings) -> list[ModelRow]:
    specs = [parse_model_spec(text) for text in settings.model]
    if not specs and not settings.model_dir:
        specs = [default_spec()]
    configured: list[tuple[str, Path]] = []
    missing: list[ModelRow] = []
    pins = set(settings.pin)
    for spec in specs:
        path = _local_dir(spec, settings.cache_dir)
        if path is None:
            where = "not on disk yet (fetched or converted when the server starts)"
            missing.append(ModelRow(spec.model_id, "?", None, None, None, False, where))
        else:
            configured.append((spec.model_id, path))
    pool = settings.pool()
    context = settings.context_length
    catalog = build_catalog(configured, pool.model_dirs, pool.scan_hf_cache, context)
    rows = [
        ModelRow(
            e.model_id,
            e.model_type.value,
            e.context_length,
            e.size_bytes,
            None,
            e.model_id in pins,
            str(e.path),
        )
        for e in catalog.entries()
    ]
    return rows + missing


def rows_from_server(url: str, timeout_s: float = 10.0) -> list[ModelRow]:
    with urllib.request.urlopen(url.rstrip("/") + "/v1/models", timeout=timeout_s) as reply:
        cards: list[dict[str, Any]] = json.load(reply)["data"]
    return [
        ModelRow(
            card["id"],
            card.get("type", "text"),
            card.get("context_length"),
            card.get("size_bytes"),
            card.get("loaded"),
            bool(card.get("pinned")),
            url,
        )
        for card in cards
    ]


def render(rows: list[ModelRow], as_json: bool) -> str:
    if as_json:
        return json.dumps([asdict(row) for row in rows], indent=2)
    header = ("ID", "TYPE", "CONTEXT", "SIZE", "LOADED", "PINNED", "WHERE")
    table = [header] + [
        (
            row.id,
            row.type,
            "?" if row.context_length is None else str(row.context_length),
            "?" if row.size_bytes is None else _human(row.size_bytes),
            "?" if row.loaded is None else ("yes" if row.loaded else "no"),
            "yes" if row.pinned else "",
            row.where,
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False))
        + "  "
        + line[-1]
        for line in table
    )


def _human(size: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def _local_dir(spec: ModelSpec, cache_dir: Path | None) -> Path | None:
    """The spec's directory if it is on disk now; never downloads or converts."""
    if spec.is_embedded:
        path = embedded_model_dir(cache_dir)
        return path if (path / "config.json").is_file() else None
    source = Path(spec.source).expanduser()
    if source.is_dir():
        return source.resolve() if (source / "config.json").is_file() else None
    try:
        return Path(snapshot_download(spec.source, local_files_only=True))
    except (LocalEntryNotFoundError, ValueError, OSError):
        return None
