"""Upstream providers, administered live: `GET/POST /admin/providers`,
`GET/PUT/DELETE /admin/providers/{name}`, `POST /admin/providers/{name}/check`.

Keys are write-only: a body may set `api_key`; answers show only whether one is set and its
last four characters. A PUT without `api_key` keeps the stored key; `"api_key": null` removes
it. `?check=true` on a write first asks the upstream for its model list (with the key) and
refuses the change if it does not answer. Providers of the config file and the built-in
`local` are listed but read-only here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from mlx_manager.api.auth import Admin, require_admin
from mlx_manager.api.deps import runtime_of
from mlx_manager.config import LOCAL_PROVIDER, ProviderSettings, UpstreamTimeouts
from mlx_manager.errors import InvalidRequest
from mlx_manager.routing.live import KEEP_KEY, LiveRouting

router = APIRouter(prefix="/admin/providers", dependencies=[Depends(require_admin)])


class ProviderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=64)  # POST: required; PUT: the path's, if given
    kind: Literal["openai", "openai_compatible", "anthropic", "local"]
    base_url: str = Field(max_length=2048)
    api_key: SecretStr | None = Field(None, max_length=4096)
    api_key_env: str | None = Field(None, max_length=128)
    timeouts: UpstreamTimeouts | None = None
    default_max_tokens: int | None = Field(None, ge=1)

    def settings(self, name: str) -> ProviderSettings:
        if self.kind == LOCAL_PROVIDER:
            raise InvalidRequest(
                "the local provider is built in: route to it with provider 'local'", param="kind"
            )
        fields = self.model_dump(exclude={"name", "api_key"}, exclude_none=True)
        try:
            return ProviderSettings.model_validate({**fields, "name": name})
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first.get("loc", ())) or None
            raise InvalidRequest(f"provider: {first.get('msg', 'invalid')}", param=param) from None

    def key(self) -> Any:
        if "api_key" not in self.model_fields_set:
            return KEEP_KEY
        return self.api_key.get_secret_value() if self.api_key is not None else None


def _live(request: Request) -> LiveRouting:
    return runtime_of(request).routing


def _view(source: str, settings: ProviderSettings, hint: str | None) -> dict[str, Any]:
    body = settings.model_dump(mode="json")
    body.update(source=source, api_key_set=hint is not None, api_key_hint=hint)
    return body


LOCAL_VIEW = {"name": LOCAL_PROVIDER, "kind": "local", "base_url": None, "source": "builtin"}


@router.get("")
async def list_providers(request: Request) -> dict[str, Any]:
    live = _live(request)
    data = [LOCAL_VIEW, *(_view(*entry) for entry in live.providers())]
    return {"object": "list", "data": data, "revision": live.revision}


@router.get("/{name}")
async def get_provider(name: str, request: Request) -> dict[str, Any]:
    if name == LOCAL_PROVIDER:
        return LOCAL_VIEW
    for entry in _live(request).providers():
        if entry[1].name == name:
            return _view(*entry)
    raise _live(request).missing_provider(name)


@router.post("", status_code=201)
async def create_provider(
    body: ProviderBody,
    request: Request,
    principal: Admin,
    check: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    if not body.name:
        raise InvalidRequest("a provider needs a name", param="name")
    key = body.key()
    stored = await _live(request).put_provider(
        body.settings(body.name),
        None if key is KEEP_KEY else key,
        principal.subject,
        create=True,
        check=check,
    )
    return _view("database", stored.settings, stored.api_key_hint)


@router.put("/{name}")
async def replace_provider(
    name: str,
    body: ProviderBody,
    request: Request,
    principal: Admin,
    check: Annotated[bool, Query()] = False,
) -> dict[str, Any]:
    if body.name is not None and body.name != name:
        raise InvalidRequest("a provider cannot be renamed: delete and create it", param="name")
    stored = await _live(request).put_provider(
        body.settings(name), body.key(), principal.subject, create=False, check=check
    )
    return _view("database", stored.settings, stored.api_key_hint)


@router.delete("/{name}", status_code=204)
async def delete_provider(name: str, request: Request, principal: Admin) -> Response:
    await _live(request).delete_provider(name, principal.subject)
    return Response(status_code=204)


@router.post("/{name}/check")
async def check_provider(name: str, request: Request) -> dict[str, Any]:
    """Whether the provider answers now (its model list, with its key)."""
    problem = await _live(request).probe(name)
    return {"name": name, "reachable": problem is None, "problem": problem}
