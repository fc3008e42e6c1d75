"""Routing rules: evaluation order, regex limits, aliases, config validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from mlx_manager.config import MAX_ROUTE_PATTERN_CHARS, RouteSettings, load_settings
from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.rules import RuleSet, Target, route


def rule(pattern: str, match: str, provider: str, priority: int = 0, **kw: object) -> RouteSettings:
    return RouteSettings.model_validate(
        {
            "pattern": pattern,
            "match": match,
            "priority": priority,
            "targets": [{"provider": provider, "model": kw.get("model", "m")}],
            **{k: v for k, v in kw.items() if k != "model"},
        }
    )


RULES = [
    rule("gpt-", "prefix", "short"),
    rule("gpt-4", "prefix", "long"),
    rule("gpt-4o", "exact", "exact"),
    rule("gpt-4.*", "regex", "regex-late", priority=5),
    rule(".*-mini", "regex", "regex-early", priority=1),
    rule("claude-.*", "regex", "regex-b", priority=1),
    rule("off", "exact", "disabled", enabled=False),
]


def provider_for(name: str, rules: list[RouteSettings] = RULES) -> str:
    return route(RuleSet.build(rules, AliasTable()), name).targets[0].provider


def test_exact_then_longest_prefix_then_regex_by_priority() -> None:
    assert provider_for("gpt-4o") == "exact"  # exact beats prefixes and regexes
    assert provider_for("gpt-4o-mini") == "long"  # longest prefix beats regex
    assert provider_for("gpt-3.5") == "short"
    assert provider_for("o3-mini") == "regex-early"
    assert provider_for("claude-x-mini") == "regex-early"  # same priority: file order
    assert provider_for("nothing") == "local"  # no rule: the local pool, name unchanged
    assert route(RuleSet.build(RULES, AliasTable()), "nothing").targets == (
        Target("local", "nothing"),
    )


def test_priority_orders_regexes_not_file_order() -> None:
    rules = [rule("a.*", "regex", "second", priority=9), rule("ab.*", "regex", "first", priority=2)]
    assert provider_for("abc", rules) == "first"
    assert provider_for("ax", rules) == "second"


def test_regex_is_a_full_match() -> None:
    rules = [rule("gpt", "regex", "up")]
    assert provider_for("gpt", rules) == "up"
    assert provider_for("my-gpt-model", rules) == "local"


def test_disabled_rules_are_skipped() -> None:
    assert provider_for("off") == "local"


def test_aliases_are_exact_rules_to_local_and_configured_rules_win() -> None:
    aliases = AliasTable.parse(["claude-sonnet-4-6=SmolLM2", "gpt-4o=other"])
    rules = RuleSet.build(RULES, aliases)
    chosen = route(rules, "claude-sonnet-4-6")
    assert chosen.targets == (Target("local", "SmolLM2"),)
    assert chosen.rule is not None and chosen.rule.match == "alias"
    assert route(rules, "gpt-4o").targets[0].provider == "exact"


def test_model_none_passes_the_requested_name() -> None:
    rules = [
        RouteSettings.model_validate(
            {"pattern": "up-", "match": "prefix", "targets": [{"provider": "p"}]}
        )
    ]
    assert route(RuleSet.build(rules, AliasTable()), "up-x").targets == (Target("p", "up-x"),)


@pytest.mark.parametrize(
    "pattern", ["(a)\\1", "(?=a)b", "a" * (MAX_ROUTE_PATTERN_CHARS + 1), "[unclosed"]
)
def test_backtracking_long_or_broken_regexes_are_refused(pattern: str) -> None:
    with pytest.raises(ValidationError):
        rule(pattern, "regex", "p")


def test_a_pathological_regex_runs_in_linear_time() -> None:
    import time

    rules = [rule("(a+)+$", "regex", "p")]  # catastrophic under backtracking engines
    start = time.perf_counter()
    assert provider_for("a" * 5000 + "!", rules) == "local"
    assert time.perf_counter() - start < 0.5


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_config_file_routes_are_validated_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = """
providers:
  - {name: up, kind: openai_compatible, base_url: "http://127.0.0.1:1/v1", api_key_env: UP_KEY,
     timeouts: {connect_s: 2, first_token_s: 5, idle_s: 5, total_s: 60}}
routes:
  - {pattern: "up-", match: prefix, targets: [{provider: up, model: x}, {provider: local, model: y}]}
"""
    monkeypatch.setenv("UP_KEY", "sk-secret")
    settings = load_settings({}, _config(tmp_path, good))
    config = settings.routing()
    assert config.providers[0].timeouts.total_s == 60
    assert config.routes[0].targets[1].provider == "local"
    monkeypatch.delenv("UP_KEY")
    with pytest.raises(ValidationError, match="UP_KEY is not set"):
        load_settings({}, _config(tmp_path, good))
    unknown = "routes:\n  - {pattern: a, targets: [{provider: nowhere}]}\n"
    with pytest.raises(ValidationError, match="unknown provider 'nowhere'"):
        load_settings({}, _config(tmp_path, unknown))
    bad_regex = "routes:\n  - {pattern: '(a)\\1', match: regex, targets: [{provider: local}]}\n"
    with pytest.raises(ValidationError, match="not valid RE2"):
        load_settings({}, _config(tmp_path, bad_regex))
    bad_url = "providers:\n  - {name: x, kind: openai, base_url: 'ftp://h'}\n"
    with pytest.raises(ValidationError, match="http"):
        load_settings({}, _config(tmp_path, bad_url))
