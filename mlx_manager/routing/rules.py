"""Routing rules and the pure `route()`: a requested model name -> an ordered chain of targets.

Our own, small: LiteLLM's wildcard router is a proxy framework, not a library. Evaluation
order is fixed and visible to an admin (GET /admin/routes/explain):
1. exact rules (aliases included: each `--model-alias NAME=ID` is an exact rule to local),
2. the longest matching prefix,
3. regex rules by `priority` (lower first, then file order), each a full match under RE2
   (linear time; patterns capped at MAX_ROUTE_PATTERN_CHARS),
4. no rule: the local pool serves the name as it is (today's behaviour).
Disabled rules are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from mlx_manager.config import LOCAL_PROVIDER, RouteSettings, compile_route_regex
from mlx_manager.routing.aliases import AliasTable

MatchKind = Literal["exact", "prefix", "regex", "alias"]


@dataclass(frozen=True, slots=True)
class Target:
    provider: str  # a provider's name, or "local"
    model: str

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: str
    match: MatchKind
    targets: tuple[tuple[str, str | None], ...]  # (provider, model or None: as requested)
    priority: int = 0
    order: int = 0  # position in the config, the tie-break between equal priorities
    local_load_budget_s: float | None = None  # pool-aware routing (routing/pool_aware.py)

    def chain(self, requested: str) -> tuple[Target, ...]:
        return tuple(Target(p, requested if m is None else m) for p, m in self.targets)

    def describe(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "match": self.match,
            "priority": self.priority,
            "local_load_budget_s": self.local_load_budget_s,
        }


@dataclass(frozen=True, slots=True)
class Route:
    """What `route()` decided: the rule (None: no rule, the local pool) and the chain."""

    requested: str
    rule: Rule | None
    targets: tuple[Target, ...]


class RuleSet:
    """Compiled rules; immutable once built, so a later live swap replaces it whole."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._exact: dict[str, Rule] = {}
        prefixes: list[Rule] = []
        regexes: list[tuple[Rule, Any]] = []
        for rule in rules:
            if rule.match in ("exact", "alias"):
                if rule.pattern in self._exact:
                    raise ValueError(f"model name {rule.pattern!r} has two exact rules")
                self._exact[rule.pattern] = rule
            elif rule.match == "prefix":
                prefixes.append(rule)
            else:
                regexes.append((rule, compile_route_regex(rule.pattern)))
        self._prefixes = sorted(prefixes, key=lambda r: (-len(r.pattern), r.order))
        self._regexes = sorted(regexes, key=lambda item: (item[0].priority, item[0].order))

    @classmethod
    def build(cls, routes: Iterable[RouteSettings], aliases: AliasTable) -> RuleSet:
        rules = [
            Rule(
                r.pattern,
                r.match,
                tuple((t.provider, t.model) for t in r.targets),
                r.priority,
                order,
                r.local_load_budget_s,
            )
            for order, r in enumerate(routes)
            if r.enabled
        ]
        configured = {r.pattern for r in rules if r.match == "exact"}
        rules += [
            Rule(name, "alias", ((LOCAL_PROVIDER, target),))
            for name, target in aliases.aliases.items()
            if name not in configured  # a configured exact rule wins over an alias
        ]
        return cls(rules)

    def match(self, name: str) -> Rule | None:
        exact = self._exact.get(name)
        if exact is not None:
            return exact
        for rule in self._prefixes:
            if name.startswith(rule.pattern):
                return rule
        for rule, regex in self._regexes:
            if regex.fullmatch(name):
                return rule
        return None


def route(rules: RuleSet, requested: str) -> Route:
    """The chain that serves `requested`: pure, no I/O, no health state."""
    rule = rules.match(requested)
    if rule is None:
        return Route(requested, None, (Target(LOCAL_PROVIDER, requested),))
    return Route(requested, rule, rule.chain(requested))
