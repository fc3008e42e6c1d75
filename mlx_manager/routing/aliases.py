"""Model aliases: names clients ask for (``claude-sonnet-4-6``, ``gpt-4o-mini``) -> served ids.

Claude Code, Cline and OpenAI-only tools send their vendor's model names; an alias table maps
them onto local models without touching the clients. A name that is not an alias is used as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AliasTable:
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, entries: list[str] | tuple[str, ...]) -> AliasTable:
        """From ``NAME=MODEL_ID`` entries; ValueError on a malformed one."""
        table: dict[str, str] = {}
        for entry in entries:
            name, sep, target = entry.partition("=")
            if not sep or not name.strip() or not target.strip():
                raise ValueError(f"model alias {entry!r} is not NAME=MODEL_ID")
            table[name.strip()] = target.strip()
        return cls(table)

    def resolve(self, name: str) -> str:
        return self.aliases.get(name, name)
