"""Strict checks of what a caller names: a repo id and a revision.

Both reach the file system inside huggingface_hub (`models--owner--name/refs/<revision>`), so
they are checked here before anything else sees them: a repo id is exactly `owner/name` in the
hub's own alphabet (huggingface_hub's validator, plus the one slash), and a revision is a branch,
tag or commit name with no `..`, no leading `/` or `-` and no empty path segment.
"""

from __future__ import annotations

import re

from huggingface_hub.utils import HFValidationError, validate_repo_id

from mlx_manager.errors import InvalidRequest, shorten

MAX_PART_CHARS = 96  # the hub's limit on a name; owners are shorter still
MAX_REVISION_CHARS = 128
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*")


def check_repo_id(text: str) -> str:
    """`text` if it is a model repo id `owner/name`, else a 400 naming the rule it breaks."""
    if text.count("/") != 1 or not text.isascii():
        raise InvalidRequest(
            f"'{shorten(text)}' is not a Hugging Face model id: write it as owner/name (ASCII).",
            param="repo_id",
            code="invalid_repo_id",
        )
    try:
        validate_repo_id(text)
        if any(len(part) > MAX_PART_CHARS for part in text.split("/")):
            raise HFValidationError("too long")
    except HFValidationError:
        raise InvalidRequest(
            f"'{shorten(text)}' is not a Hugging Face model id: owner and name use letters, "
            "digits, '-', '_' and '.', do not start or end with '-' or '.', hold no '--' or "
            f"'..', and are at most {MAX_PART_CHARS} characters each.",
            param="repo_id",
            code="invalid_repo_id",
        ) from None
    return text


def check_revision(text: str) -> str:
    """`text` if it is a safe branch, tag or commit name, else a 400."""
    parts = text.split("/")
    if (
        len(text) > MAX_REVISION_CHARS
        or not _REVISION.fullmatch(text)
        or ".." in text
        or any(not part or part.endswith(".") for part in parts)
        or text.endswith((".lock", ".git"))
    ):
        raise InvalidRequest(
            f"'{shorten(text)}' is not a revision: name a branch, tag or commit (letters, "
            f"digits, '_', '-', '.', '/'; no '..'; at most {MAX_REVISION_CHARS} characters).",
            param="revision",
            code="invalid_revision",
        )
    return text
