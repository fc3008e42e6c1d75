"""LiveRouting: changes checked whole, stored, then swapped in; providers reused or retired.
(An in-memory repository stands in for the database here; tests/api/test_routing_admin.py
runs the real store over HTTP.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mlx_manager.config import ProviderSettings, RouteSettings, RoutingConfig
from mlx_manager.errors import Conflict, InvalidRequest, NotFound
from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.live import KEEP_KEY, LiveRouting
from mlx_manager.routing.service import GenerationService
from mlx_manager.store.routing_repo import StoredProvider, StoredRoute
from tests.routing.test_service import RecordingProvider


class MemoryRepo:
    def __init__(self, fail: bool = False) -> None:
        self.providers: dict[str, StoredProvider] = {}
        self.routes: dict[int, StoredRoute] = {}
        self.fail = fail

    def _check(self) -> None:
        if self.fail:
            raise OSError("disk on fire")

    async def load(self) -> tuple[list[StoredProvider], list[StoredRoute]]:
        return list(self.providers.values()), list(self.routes.values())

    async def save_provider(
        self, p: StoredProvider, actor: str, *, created: bool
    ) -> StoredProvider:
        self._check()
        hint = "…" + p.api_key[-4:] if p.api_key else None
        self.providers[p.settings.name] = StoredProvider(p.settings, p.api_key, hint)
        return self.providers[p.settings.name]

    async def delete_provider(self, name: str, actor: str) -> bool:
        self._check()
        return self.providers.pop(name, None) is not None

    async def add_route(self, settings: RouteSettings, actor: str) -> StoredRoute:
        self._check()
        stored = StoredRoute(len(self.routes) + 1, settings)
        self.routes[stored.id] = stored
        return stored

    async def replace_route(self, route_id: int, settings: RouteSettings, actor: str) -> bool:
        self._check()
        self.routes[route_id] = StoredRoute(route_id, settings)
        return True

    async def delete_route(self, route_id: int, actor: str) -> bool:
        self._check()
        return self.routes.pop(route_id, None) is not None


def _settings(name: str, **extra: Any) -> ProviderSettings:
    return ProviderSettings.model_validate(
        {"name": name, "kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", **extra}
    )


def _route(pattern: str, provider: str, match: str = "exact") -> RouteSettings:
    return RouteSettings.model_validate(
        {"pattern": pattern, "match": match, "targets": [{"provider": provider, "model": "m"}]}
    )


def _live(**config: Any) -> tuple[LiveRouting, GenerationService]:
    aliases = AliasTable.parse(())
    service = GenerationService(RecordingProvider(), aliases)
    routing = RoutingConfig.model_validate(
        {
            "providers": (),
            "routes": (),
            "model_aliases": (),
            "cooldown_failures": 3,
            "cooldown_s": 30.0,
            **config,
        }
    )
    return LiveRouting(service, routing, aliases), service


def test_a_change_is_served_by_the_next_request_and_the_old_table_lives_on() -> None:
    async def run() -> None:
        live, service = _live()
        await live.attach(MemoryRepo())  # type: ignore[arg-type]
        before = service.table
        await live.put_provider(_settings("up"), "k", "admin", create=True)
        await live.add_route(_route("m1", "up"), "admin")
        assert service.route("m1").targets[0].provider == "up"
        assert before.rules.match("m1") is None  # a request holding it is unaffected
        assert live.revision == 4  # construction, attach, two writes
        await live.close()

    asyncio.run(run())


def test_a_failed_write_changes_nothing_and_closes_what_it_built() -> None:
    async def run() -> None:
        live, service = _live()
        repo = MemoryRepo(fail=True)
        await live.attach(repo)  # type: ignore[arg-type]
        table = service.table
        with pytest.raises(OSError):
            await live.put_provider(_settings("up"), "k", "admin", create=True)
        assert service.table is table
        assert live.providers() == []
        await live.close()

    asyncio.run(run())


def test_invalid_changes_are_400_or_409_and_never_stored() -> None:
    async def run() -> None:
        live, _ = _live(providers=(_settings("from-file"),))
        repo = MemoryRepo()
        await live.attach(repo)  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest, match="unknown provider 'ghost'"):
            await live.add_route(_route("x", "ghost"), "admin")
        with pytest.raises(Conflict, match="already exists"):
            await live.put_provider(_settings("from-file"), None, "admin", create=True)
        with pytest.raises(Conflict, match="config file"):
            await live.put_provider(_settings("from-file"), None, "admin", create=False)
        with pytest.raises(Conflict, match="config file"):
            await live.delete_provider("from-file", "admin")
        with pytest.raises(NotFound):
            await live.delete_route(42, "admin")
        await live.add_route(_route("x", "from-file"), "admin")
        with pytest.raises(InvalidRequest, match="declared twice"):
            await live.add_route(_route("x", "local"), "admin")
        assert len(repo.routes) == 1
        await live.close()

    asyncio.run(run())


def test_an_unchanged_provider_keeps_its_client_and_keep_key_keeps_the_key() -> None:
    async def run() -> None:
        live, service = _live()
        await live.attach(MemoryRepo())  # type: ignore[arg-type]
        await live.put_provider(_settings("a"), "key-a", "admin", create=True)
        client = service.table.upstreams["a"]
        await live.put_provider(_settings("b"), None, "admin", create=True)
        assert service.table.upstreams["a"] is client
        stored = await live.put_provider(
            _settings("a", default_max_tokens=7), KEEP_KEY, "admin", create=False
        )
        assert stored.api_key == "key-a"
        assert service.table.upstreams["a"] is not client
        await live.close()

    asyncio.run(run())


def test_a_replaced_provider_is_closed_after_its_total_timeout() -> None:
    async def run() -> None:
        live, service = _live()
        await live.attach(MemoryRepo())  # type: ignore[arg-type]
        quick = {"timeouts": {"total_s": 0.2}}
        await live.put_provider(_settings("a", **quick), None, "admin", create=True)
        old = service.table.upstreams["a"]
        await live.delete_provider("a", "admin")
        assert not old.http._client.is_closed  # a request may still be streaming from it
        await asyncio.sleep(0.4)
        assert old.http._client.is_closed
        await live.close()

    asyncio.run(run())


def test_stored_rules_that_clash_with_the_config_file_stop_the_start() -> None:
    async def run() -> None:
        live, _ = _live(providers=(_settings("dup"),))
        repo = MemoryRepo()
        repo.providers["dup"] = StoredProvider(_settings("dup"), None, None)
        with pytest.raises(ValueError, match="stored routing configuration"):
            await live.attach(repo)  # type: ignore[arg-type]
        await live.close()

    asyncio.run(run())
