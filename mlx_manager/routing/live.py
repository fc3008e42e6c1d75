"""The routing configuration, changed live: the config file's providers and rules (read-only)
plus those an admin wrote through the API (stored in the database).

Every change is checked whole before anything is written (unique names, known targets, each
rule once, regexes compile under RE2, optionally the upstream answers), then stored, then
swapped into the generation service as one new `RoutingTable`: a request in flight keeps the
table it started with. A provider whose settings and key did not change keeps its client (and
its pooled connections); one replaced or removed is closed once its longest possible request
(its total timeout) is over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from mlx_manager.config import (
    LOCAL_PROVIDER,
    ProviderSettings,
    RouteSettings,
    RoutingConfig,
    check_routing,
)
from mlx_manager.errors import Conflict, InvalidRequest, NotFound
from mlx_manager.routing.aliases import AliasTable
from mlx_manager.routing.providers.factory import UpstreamProvider, upstream_provider
from mlx_manager.routing.providers.upstream import upstream_key_from_env
from mlx_manager.routing.rules import RuleSet
from mlx_manager.routing.service import GenerationService, RoutingTable
from mlx_manager.store.routing_repo import RoutingRepository, StoredProvider, StoredRoute

log = logging.getLogger(__name__)

Source = Literal["builtin", "config", "database"]
KEEP_KEY: Any = object()  # an update that leaves the stored key as it is


@dataclass(frozen=True, slots=True)
class _Built:
    settings: ProviderSettings
    key: str
    provider: UpstreamProvider


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A candidate configuration, checked: its rules, its providers, and which of those were
    built for it (closed if it is given up)."""

    rules: RuleSet
    built: dict[str, _Built]
    fresh: list[UpstreamProvider]

    async def discard(self) -> None:
        for provider in self.fresh:
            await provider.aclose()


class LiveRouting:
    def __init__(
        self, service: GenerationService, config: RoutingConfig, aliases: AliasTable
    ) -> None:
        self._service = service
        self._config = config
        self._aliases = aliases
        self._repo: RoutingRepository | None = None
        self._providers: dict[str, StoredProvider] = {}  # from the database
        self._routes: dict[int, StoredRoute] = {}  # from the database, by id
        self._built: dict[str, _Built] = {}
        self._retiring: set[UpstreamProvider] = set()
        self._lock = asyncio.Lock()
        self.revision = 0
        self._install(self._prepare(self._providers, self._routes))

    async def attach(self, repo: RoutingRepository) -> None:
        """Add what the database holds; ValueError if it clashes with the config file."""
        providers, routes = await repo.load()
        async with self._lock:
            stored_providers = {p.settings.name: p for p in providers}
            stored_routes = {r.id: r for r in routes}
            try:
                prepared = self._prepare(stored_providers, stored_routes)
            except ValueError as exc:
                raise ValueError(f"the stored routing configuration is not valid: {exc}") from exc
            self._repo, self._providers, self._routes = repo, stored_providers, stored_routes
            self._install(prepared)
        log.info("routing: %d provider(s), %d rule(s) from the store", len(providers), len(routes))

    async def close(self) -> None:
        for built in self._built.values():
            await built.provider.aclose()
        for provider in list(self._retiring):
            await provider.aclose()
        self._built.clear()
        self._retiring.clear()

    # --- reading -----------------------------------------------------------------------

    def source_of_provider(self, name: str) -> Source | None:
        if name == LOCAL_PROVIDER:
            return "builtin"
        if name in self._providers:
            return "database"
        if any(p.name == name for p in self._config.providers):
            return "config"
        return None

    def providers(self) -> list[tuple[Source, ProviderSettings, str | None]]:
        """Every provider with its source and the key's hint (never the key)."""
        listed: list[tuple[Source, ProviderSettings, str | None]] = [
            ("config", p, f"env:{p.api_key_env}" if p.api_key_env else None)
            for p in self._config.providers
        ]
        listed += [("database", p.settings, p.api_key_hint) for p in self._providers.values()]
        return listed

    def routes(self) -> list[tuple[Source, int | None, RouteSettings]]:
        listed: list[tuple[Source, int | None, RouteSettings]] = [
            ("config", None, r) for r in self._config.routes
        ]
        listed += [("database", r.id, r.settings) for r in self._sorted_routes(self._routes)]
        return listed

    def stored_provider(self, name: str) -> StoredProvider:
        provider = self._providers.get(name)
        if provider is None:
            raise self.missing_provider(name)
        return provider

    def stored_route(self, route_id: int) -> StoredRoute:
        route = self._routes.get(route_id)
        if route is None:
            raise NotFound(f"no stored route with id {route_id}", code="route_not_found")
        return route

    # --- writing -----------------------------------------------------------------------

    async def put_provider(
        self,
        settings: ProviderSettings,
        api_key: str | None,
        actor: str,
        *,
        create: bool,
        check: bool = False,
    ) -> StoredProvider:
        """Create (409 if the name is taken) or replace (404 unless stored) a provider.
        `api_key` KEEP_KEY keeps the stored key; None or "" removes it."""
        repo = self._writable()
        name = settings.name
        async with self._lock:
            source = self.source_of_provider(name)
            if create and source is not None:
                raise Conflict(f"provider {name!r} already exists ({source})")
            if not create and source != "database":
                raise self.missing_provider(name)
            if api_key is KEEP_KEY:
                previous = self._providers[name]
                stored = StoredProvider(settings, previous.api_key, previous.api_key_hint)
            else:
                stored = StoredProvider(settings, api_key or None, None)
            providers = {**self._providers, name: stored}
            prepared = self._checked(providers, self._routes)
            if check:
                problem = await prepared.built[name].provider.probe()
                if problem is not None:
                    await prepared.discard()
                    raise InvalidRequest(
                        f"provider {name!r} {problem}", code="provider_unreachable"
                    )
            stored = await self._commit(prepared, repo.save_provider(stored, actor, created=create))
            self._providers = {**self._providers, name: stored}
            return stored

    async def delete_provider(self, name: str, actor: str) -> None:
        repo = self._writable()
        async with self._lock:
            if self.source_of_provider(name) != "database":
                raise self.missing_provider(name)
            users = [
                r.pattern for _, _, r in self.routes() if any(t.provider == name for t in r.targets)
            ]
            if users:
                raise Conflict(
                    f"provider {name!r} is a target of route(s) {', '.join(map(repr, users))}: "
                    "change or delete those first"
                )
            providers = {k: v for k, v in self._providers.items() if k != name}
            prepared = self._checked(providers, self._routes)
            await self._commit(prepared, repo.delete_provider(name, actor))
            self._providers = providers

    async def probe(self, name: str) -> str | None:
        """Whether a configured provider answers now (None) or why not."""
        built = self._built.get(name)
        if built is None:
            raise self.missing_provider(name)
        return await built.provider.probe()

    async def add_route(self, settings: RouteSettings, actor: str) -> StoredRoute:
        repo = self._writable()
        async with self._lock:
            probe = StoredRoute(-1, settings)  # sorts last, as the new id will
            prepared = self._checked(self._providers, {**self._routes, -1: probe})
            stored: StoredRoute = await self._commit(prepared, repo.add_route(settings, actor))
            self._routes = {**self._routes, stored.id: stored}
            return stored

    async def replace_route(self, route_id: int, settings: RouteSettings, actor: str) -> None:
        repo = self._writable()
        async with self._lock:
            current = self.stored_route(route_id)
            routes = {**self._routes, route_id: replace(current, settings=settings)}
            prepared = self._checked(self._providers, routes)
            await self._commit(prepared, repo.replace_route(route_id, settings, actor))
            self._routes = routes

    async def delete_route(self, route_id: int, actor: str) -> None:
        repo = self._writable()
        async with self._lock:
            self.stored_route(route_id)
            routes = {k: v for k, v in self._routes.items() if k != route_id}
            prepared = self._checked(self._providers, routes)
            await self._commit(prepared, repo.delete_route(route_id, actor))
            self._routes = routes

    # --- building ----------------------------------------------------------------------

    def _writable(self) -> RoutingRepository:
        if self._repo is None:
            raise Conflict("the store is not open: routing cannot be changed now")
        return self._repo

    def missing_provider(self, name: str) -> NotFound | Conflict:
        source = self.source_of_provider(name)
        if source in ("config", "builtin"):
            where = "the config file" if source == "config" else "the server"
            return Conflict(f"provider {name!r} is defined by {where} and cannot be changed here")
        return NotFound(f"no provider {name!r}", code="provider_not_found")

    @staticmethod
    def _sorted_routes(routes: Mapping[int, StoredRoute]) -> list[StoredRoute]:
        return sorted(routes.values(), key=lambda r: r.id if r.id >= 0 else float("inf"))

    def _checked(
        self, providers: Mapping[str, StoredProvider], routes: Mapping[int, StoredRoute]
    ) -> _Prepared:
        """`_prepare`, with its ValueError as the admin's 400."""
        try:
            return self._prepare(providers, routes)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None

    def _prepare(
        self, providers: Mapping[str, StoredProvider], routes: Mapping[int, StoredRoute]
    ) -> _Prepared:
        """The rules and providers of a candidate configuration, checked whole."""
        settings = [*self._config.providers, *(p.settings for p in providers.values())]
        keys = {p.name: upstream_key_from_env(p) for p in self._config.providers}
        keys.update({p.settings.name: p.api_key or "" for p in providers.values()})
        route_list = [*self._config.routes, *(r.settings for r in self._sorted_routes(routes))]
        check_routing(settings, route_list)
        rules = RuleSet.build(route_list, self._aliases)
        built: dict[str, _Built] = {}
        fresh: list[UpstreamProvider] = []
        for provider_settings in settings:
            key = keys[provider_settings.name]
            existing = self._built.get(provider_settings.name)
            if existing is not None and (existing.settings, existing.key) == (
                provider_settings,
                key,
            ):
                built[provider_settings.name] = existing
                continue
            provider = upstream_provider(provider_settings, key or None)
            fresh.append(provider)
            built[provider_settings.name] = _Built(provider_settings, key, provider)
        return _Prepared(rules, built, fresh)

    async def _commit(self, prepared: _Prepared, write: Awaitable[Any]) -> Any:
        """Store the change, then serve it; nothing is served if the write fails."""
        try:
            result = await write
        except BaseException:
            await prepared.discard()
            raise
        self._install(prepared)
        return result

    def _install(self, prepared: _Prepared) -> None:
        kept = {id(b.provider) for b in prepared.built.values()}
        for old in self._built.values():
            if id(old.provider) not in kept:
                self._retire(old)
        self._built = prepared.built
        upstreams = {name: b.provider for name, b in prepared.built.items()}
        self._service.swap(RoutingTable(prepared.rules, upstreams))
        self.revision += 1

    def _retire(self, old: _Built) -> None:
        """Close a replaced provider once no request it may be serving can still run."""
        provider = old.provider
        self._retiring.add(provider)

        async def close_later() -> None:
            await asyncio.sleep(old.settings.timeouts.total_s)
            if provider in self._retiring:
                self._retiring.discard(provider)
                await provider.aclose()

        try:
            task = asyncio.get_running_loop().create_task(close_later())
        except RuntimeError:  # no loop (built at construction): nothing can be in flight
            self._retiring.discard(provider)
            return
        _background.add(task)
        task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()
