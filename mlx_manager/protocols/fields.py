"""Field types shared by the wire schemas of every dialect."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

# Served model ids are directory names (at most 255 bytes on common filesystems) or Hub repo
# ids (about 200 characters at most); a longer name can match nothing and is only echoed back.
MAX_MODEL_NAME_CHARS = 256

ModelName = Annotated[str, Field(min_length=1, max_length=MAX_MODEL_NAME_CHARS)]
