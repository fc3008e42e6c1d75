"""Log lines, number formatting and result files, the same way in every script."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def logger(name: str, clock: bool = False) -> Callable[[str], None]:
    """A function printing `[name] message` (with the time of day if `clock`) to stderr."""

    def log(message: str) -> None:
        tag = f"{name} {time.strftime('%H:%M:%S')}" if clock else name
        print(f"[{tag}] {message}", file=sys.stderr, flush=True)

    return log


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def write_json(path: Path, data: Any) -> None:
    """`data` as indented JSON with a final newline; the parent directory is created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_report(out: Path, name: str, result: dict[str, Any], table: str) -> None:
    """A script's result: `table` printed and kept in `result`, `NAME.json` and `NAME.txt`."""
    result["table"] = table
    print(table)
    write_json(out / f"{name}.json", result)
    (out / f"{name}.txt").write_text(table + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`; None when missing or unreadable (a phase that failed)."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def fmt_ms(seconds: float | None, digits: int = 1) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.{digits}f}"
