"""Typed, read-only settings: flags > env `MLX_MANAGER_*` > config file > defaults.

pydantic-settings does the env and precedence work; the CLI builds its flags from the
field metadata here, so a flag, its env var and its config-file key can never drift apart.

Each setting is written once, in `Settings`: name, type, default, bounds and description.
A component takes only its own sub-config (`ServerConfig`, `EngineConfig`, ...), a
`SubConfig` whose fields are all `name: T = setting()`: at class creation the marker becomes
a copy of the Settings field's default, bounds and description, so `EngineConfig()` in a test
gets the real defaults and nothing is retyped by hand. A component that wants another name
says so once, `setting("source")` (a pydantic validation alias); one that wants a parsed form
(e.g. `(id, seconds)` pairs) says so in a validator on its sub-config. `Settings.sub(Kind)`
builds any sub-config from the settings by reading those names, so adding a setting to a
component is one line in `Settings` plus `name: T = setting()` in the sub-config. `T` is
restated only for the type checker; tests/test_config.py fails if it drifts from Settings'
(a list there is a hashable tuple here; a validator marks a deliberate parse).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import platformdirs
import re2
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "MLX_MANAGER_"

C = TypeVar("C", bound="SubConfig")

# Routing regexes are written by admins and matched against every requested model name: RE2
# (linear time, no backtracking) plus a length cap keep a bad one from costing more than a
# bounded scan.
MAX_ROUTE_PATTERN_CHARS = 256
LOCAL_PROVIDER = "local"  # the target name of the model pool on this machine


def compile_route_regex(pattern: str) -> Any:
    """A routing regex compiled by RE2; ValueError if too long or not valid RE2 syntax
    (backreferences and lookarounds are not: they need backtracking)."""
    if len(pattern) > MAX_ROUTE_PATTERN_CHARS:
        raise ValueError(f"route regex is longer than {MAX_ROUTE_PATTERN_CHARS} characters")
    try:
        return re2.compile(pattern)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(f"route regex {pattern!r} is not valid RE2: {detail}") from None


def check_routing(providers: Sequence[ProviderSettings], routes: Sequence[RouteSettings]) -> None:
    """ValueError unless the providers and rules make one valid table: unique provider names,
    key variables set, each rule once, every target a known provider."""
    names = [p.name for p in providers]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"provider name(s) declared twice: {', '.join(sorted(dup))}")
    for provider in providers:
        if provider.api_key_env and not os.environ.get(provider.api_key_env):
            raise ValueError(
                f"provider {provider.name!r}: environment variable "
                f"{provider.api_key_env} is not set"
            )
    known = {*names, LOCAL_PROVIDER}
    seen: set[tuple[str, str]] = set()
    for route in routes:
        key = (route.match, route.pattern)
        if key in seen:
            raise ValueError(f"route {route.match} {route.pattern!r} is declared twice")
        seen.add(key)
        for target in route.targets:
            if target.provider not in known:
                raise ValueError(
                    f"route {route.pattern!r} names unknown provider {target.provider!r}"
                )


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UpstreamTimeouts(_Strict):
    """Seconds an upstream may take: to connect, to its first event, between two events, and
    for the whole answer."""

    connect_s: float = Field(10.0, gt=0)
    first_token_s: float = Field(300.0, gt=0)
    idle_s: float = Field(120.0, gt=0)
    total_s: float = Field(600.0, gt=0)
    # A non-streamed request is asked of the upstream whole (no events to time): its answer
    # must come within this; None: total_s, so a long answer is never cut sooner than it
    # would be streamed. Lower it to fail over sooner from an upstream that stalls.
    whole_answer_s: float | None = Field(None, gt=0)

    @property
    def whole_answer_deadline_s(self) -> float:
        limit = self.total_s if self.whole_answer_s is None else self.whole_answer_s
        return min(limit, self.total_s)


class LocalTimeouts(_Strict):
    """Seconds the local engine may take: to its first event (counted from the request's
    arrival at the pool, so a model load and the wait in the queue count), between two events,
    and for the whole answer. Longer than an upstream's total by default: a CPU or a small Mac
    generates slowly, and a load comes first."""

    first_token_s: float = Field(300.0, gt=0)
    idle_s: float = Field(120.0, gt=0)
    total_s: float = Field(900.0, gt=0)


class ProviderSettings(_Strict):
    """An upstream: where it is, which dialect it speaks, where its key comes from."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    kind: Literal["openai", "openai_compatible", "anthropic"]
    # OpenAI dialects: up to the version (http://host/v1); Anthropic: the root (/v1/messages
    # is appended), as the vendors' SDKs take them.
    base_url: str
    api_key_env: str | None = None  # the environment variable holding its key
    timeouts: UpstreamTimeouts = Field(default_factory=lambda: UpstreamTimeouts.model_validate({}))
    # Anthropic requires max_tokens: sent when the request sets none.
    default_max_tokens: int = Field(4096, ge=1)

    @field_validator("name")
    @classmethod
    def _not_local(cls, value: str) -> str:
        if value == LOCAL_PROVIDER:
            raise ValueError(f"provider name {LOCAL_PROVIDER!r} is reserved for the local pool")
        return value

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url {value!r} must be an http(s) URL")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("base_url may not hold credentials, a query or a fragment")
        return value.rstrip("/")


class RouteTarget(_Strict):
    provider: str  # a provider's name, or "local"
    model: str | None = None  # the model name there; None: the requested name as it is


class RouteSettings(_Strict):
    """A routing rule: requested model names it matches, and the chain of targets to try."""

    pattern: str = Field(min_length=1, max_length=MAX_ROUTE_PATTERN_CHARS)
    match: Literal["exact", "prefix", "regex"] = "exact"
    priority: int = 0  # regex rules: lower first
    enabled: bool = True
    targets: list[RouteTarget] = Field(min_length=1, max_length=5)
    # Pool-aware: a local target whose model is not resident is passed over (to the next
    # target) when loading it is estimated to take longer than this (None: no limit).
    local_load_budget_s: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _check_regex(self) -> RouteSettings:
        if self.match == "regex":
            compile_route_regex(self.pattern)
        return self


class Settings(BaseSettings):
    """All settings. Each field is a flag `--name-with-dashes`, an env var and a config key."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=1, le=65535, description="Port to listen on.")
    model: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Model to serve: [ALIAS=]PATH_OR_HF_ID, a local MLX model directory or a Hugging "
            "Face id from the local HF cache. Repeatable (env/config: comma-separated or a "
            "list). Default: the embedded SmolLM2-135M-Instruct."
        ),
    )
    model_dir: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Directory whose model directories (any depth up to 3, each with a config.json) "
            "may all be served, loaded on first request; ids are their paths below DIR "
            "(e.g. org/name). Repeatable. With --model-dir and no --model, the embedded model "
            "is not added."
        ),
    )
    scan_hf_cache: bool = Field(
        False,
        description=(
            "Also serve every MLX-loadable model (config.json + safetensors) found in the "
            "local Hugging Face cache, loaded on first request."
        ),
    )
    max_models: int | None = Field(
        None, ge=1, description="Most models resident at once; the LRU idle one is evicted."
    )
    max_memory_gb: float | None = Field(
        None,
        gt=0,
        description="Memory budget (GB) of resident models: weights plus each model's KV pool.",
    )
    memory_limit_pct: float | None = Field(
        None,
        gt=0,
        le=100,
        description="Memory budget as a percentage of system (or GPU) memory; the lower "
        "of this and --max-memory-gb applies.",
    )
    pin: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Model id to load at startup and never evict or idle-unload. Repeatable.",
    )
    keep_alive: float | None = Field(
        None,
        gt=0,
        description="Unload a model after this many idle seconds (default: never).",
    )
    model_keep_alive: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Per-model idle TTL as ID=SECONDS (0: never), overriding --keep-alive. "
        "Repeatable.",
    )
    context_length: int | None = Field(
        None, ge=16, description="Override the model's context length (tokens)."
    )
    default_max_tokens: int = Field(
        4096,
        ge=1,
        description="Completion length cap when a request sets no max_tokens.",
    )
    max_request_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest request body accepted (bytes); 413 above."
    )
    large_body_rate_mb: float = Field(
        64.0,
        ge=0,
        description="MB/s at which the server reads the part of request bodies past their "
        "first MiB, shared by all connections, so clients sending giant bodies cannot starve "
        "other requests of the event loop; 0 reads them as fast as they come.",
    )
    max_header_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="Largest request line plus headers (bytes); 431 and close above, checked "
        "as the bytes arrive, before authentication.",
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a connection has to send a complete request line and headers "
        "(counted from its first byte, or from connecting); 408 and close after.",
    )
    body_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a request body may stall (no byte arriving) before the request "
        "is ended with 408 and the connection closed.",
    )
    connection_idle_timeout: int = Field(
        5,
        ge=1,
        description="Seconds a kept-alive HTTP connection may sit idle between requests.",
    )
    shutdown_timeout: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM or Ctrl-C: seconds the requests in flight may finish while new "
        "ones are refused; each still open after it ends with an error event (503/529).",
    )
    max_connections: int | None = Field(
        None,
        ge=1,
        description="Most open HTTP connections; a connection beyond it gets 503 with "
        "Retry-After and is closed. Default: 10000, or the open-file limit less headroom "
        "for model files and sockets where that is lower.",
    )
    max_audio_bytes: int = Field(
        25 * 1024 * 1024,
        ge=1024,
        description="Largest audio file of /v1/audio/transcriptions (bytes); 413 above. The "
        "route's body limit is the larger of this and --max-request-bytes.",
    )
    max_audio_seconds: float = Field(
        1800.0, gt=0, description="Longest audio accepted for transcription (seconds); 400 above."
    )
    max_waiting_requests: int = Field(
        1024, ge=1, description="Requests queued beyond this are refused with 503."
    )
    max_embedding_inputs: int = Field(
        2048, ge=1, description="Most inputs of one /v1/embeddings request; 400 above."
    )
    max_embedding_tokens: int = Field(
        262_144, ge=1, description="Most tokens of one /v1/embeddings request; 413 above."
    )
    prefill_step_size: int = Field(
        2048, ge=16, description="Most prompt tokens of one sequence computed in one step."
    )
    paged: bool = Field(
        True,
        description=(
            "Continuous batching on the paged KV cache (models with plain KV caches); "
            "--no-paged runs every model one sequence at a time."
        ),
    )
    kv_cache_gb: float = Field(
        2.0, gt=0, description="KV cache pool per model, in GB, preallocated at load."
    )
    block_size: int = Field(32, ge=1, le=1024, description="Tokens per KV cache block.")
    max_num_seqs: int = Field(256, ge=1, description="Most sequences in one running batch.")
    max_num_batched_tokens: int = Field(
        8192, ge=1, description="Token budget of one engine step (decodes + prefill chunks)."
    )
    priority_aging_s: float = Field(
        5.0,
        gt=0,
        description="A waiting request gains one priority level per this many seconds.",
    )
    gil_switch_interval_ms: float = Field(
        0.5,
        gt=0,
        le=100,
        description=(
            "While at most 2 requests are in flight: the longest time the engine thread "
            "holds Python's GIL while the HTTP event loop waits for it "
            "(sys.setswitchinterval). Python's 5 ms default, kept under more load, delays "
            "each streamed token by up to that much."
        ),
    )
    image_allow_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Hosts or CIDRs (e.g. 127.0.0.1, 10.0.0.0/8, images.lan) that image URLs may "
            "reach although they are private, loopback or link-local; refused by default. "
            "Repeatable."
        ),
    )
    image_fetch_timeout_s: float = Field(
        10.0, gt=0, description="Seconds to fetch one image URL (redirects included); 400 after."
    )
    max_image_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest encoded image (bytes); 400 above."
    )
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Most pixels (width x height) of a decoded image; 400 above."
    )
    max_image_side: int = Field(
        2048, ge=16, description="Images longer than this (pixels) are downscaled to it."
    )
    max_images_per_request: int = Field(
        16, ge=1, description="Most images in one chat request; 400 above."
    )
    max_vision_seqs: int = Field(
        4,
        ge=1,
        description="Vision requests generating at once per vision model (interleaved token "
        "by token); more wait in arrival order.",
    )
    cpu_float32_max_gb: float = Field(
        2.0,
        ge=0,
        description=(
            "On MLX's CPU backend, models whose float32 weights fit in this many GB are "
            "dequantized and upcast to float32 at load (much faster there); 0 disables."
        ),
    )
    cache_dir: Path | None = Field(
        None,
        description="Where converted models are cached. Default: the user cache directory.",
    )
    hub_timeout_s: float = Field(
        10.0, gt=0, description="Seconds to wait for the Hugging Face hub before giving up."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text or as JSON lines (one object per line)."
    )
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    distributed: bool = Field(
        False,
        description=(
            "Serve the one --model sharded (tensor parallel, mlx-lm's Model.shard) over an "
            "mx.distributed group: start the same command on every rank (mlx.launch, or "
            "MLX_RANK/MLX_HOSTFILE for the ring backend); rank 0 serves HTTP, the others "
            "follow its steps."
        ),
    )
    distributed_backend: str = Field(
        "any", description="mx.distributed backend: any, ring, mpi, nccl, jaccl."
    )
    distributed_host: str | None = Field(
        None,
        description=(
            "Address of rank 0 that the other ranks reach for its step channel (default: "
            "rank 0's address in the ring hostfile, else NCCL_HOST_IP, else 127.0.0.1)."
        ),
    )
    distributed_port: int = Field(
        0, ge=0, le=65535, description="Port of rank 0's step channel (0: any free port)."
    )
    distributed_timeout_s: float = Field(
        300.0, gt=0, description="How long rank 0 waits for every rank to join and load."
    )
    metrics: bool = Field(
        True,
        description="Measure requests for /metrics (--no-metrics: no per-request work, and "
        "/metrics answers 404).",
    )
    metrics_public: bool = Field(
        False,
        description="Serve /metrics without the API key (for a scraper on a trusted network).",
    )
    otel_endpoint: str | None = Field(
        None,
        description="Trace requests with OpenTelemetry and send the spans (OTLP over HTTP) to "
        "this collector, e.g. http://127.0.0.1:4318 (spans go to URL/v1/traces). The standard "
        "OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) works too. "
        "Default: no tracing, at no cost.",
    )
    otel_service_name: str = Field(
        "mlx-manager", min_length=1, description="The service.name of this server's spans."
    )
    logfire: bool = Field(
        False,
        description="Also send the spans to Logfire (needs the logfire package, which is not a "
        "dependency; its LOGFIRE_TOKEN and other settings apply).",
    )
    api_key: str | None = Field(
        None,
        description=(
            "A static admin key (Authorization: Bearer or x-api-key). With it, or once any "
            "account or API key exists, every route but /, /health and sign-in needs "
            "credentials; with none, only loopback clients are answered."
        ),
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names (besides the loopback ones and --host) that requests and "
        "browser Origins may use; '*' allows any. Repeatable (env/config: comma-separated).",
    )
    signup: Literal["closed", "approval", "open"] = Field(
        "closed",
        description="Self sign-up (POST /auth/register): closed, approval (new accounts wait "
        "as pending until an admin approves) or open.",
    )
    model_alias: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Map a requested model name to a served model: NAME=MODEL_ID (e.g. "
            "claude-sonnet-4-6=SmolLM2-135M-Instruct). Repeatable."
        ),
    )

    providers: list[ProviderSettings] = Field(
        default_factory=list,
        description="Upstream providers, as a list of {name, kind: openai|openai_compatible|"
        "anthropic, base_url, api_key_env, timeouts} (config file, or JSON). See README.",
    )
    routes: list[RouteSettings] = Field(
        default_factory=list,
        description="Routing rules, as a list of {pattern, match: exact|prefix|regex, "
        "priority, enabled, targets: [{provider, model}], local_load_budget_s} (config file, or "
        "JSON); a name no rule matches is served by the local pool.",
    )
    local_timeouts: LocalTimeouts = Field(
        default_factory=lambda: LocalTimeouts.model_validate({}),
        description="Seconds the local engine may take, as {first_token_s: 300, idle_s: 120, "
        "total_s: 900} (config file, or JSON): to the first event (a model load and the queue "
        "included), between events, for the whole answer. On expiry the generation is aborted "
        "and answered with 504 (a route's chain fails over when nothing was sent yet).",
    )
    failover_cooldown_failures: int = Field(
        3, ge=1, description="Consecutive failures after which a route target is skipped."
    )
    failover_cooldown_s: float = Field(
        30.0, gt=0, description="Seconds a failing route target is skipped (or its Retry-After)."
    )
    data_dir: Path | None = Field(
        None,
        description="Where the database (SQLite) and the master key file live. Default: the "
        "user data directory (e.g. ~/.local/share/mlx-manager).",
    )
    database_url: str | None = Field(
        None,
        description="The store's database: sqlite:///PATH or postgresql://USER:PASS@HOST/DB. "
        "Default: SQLite (WAL) in --data-dir.",
    )

    audit: bool = Field(
        True,
        description="Record one small row per request on the generating APIs (the audit log: "
        "times, models, backend, attempts, status, tokens; no message text) for "
        "GET /admin/requests; --no-audit records nothing.",
    )
    audit_prompts: bool = Field(
        False,
        description="Also keep each request's last user message (cut to 2 KB) in the audit "
        "log. Off: no prompt text is stored.",
    )
    audit_flush_ms: int = Field(
        500,
        ge=10,
        le=60_000,
        description="The audit log writes its queued rows every this many milliseconds (or "
        "as soon as 200 are queued), one INSERT per batch, off the request path.",
    )
    audit_retention_days: int = Field(
        30,
        ge=0,
        description="Audit rows older than this many days are deleted (checked hourly); 0 "
        "keeps them forever.",
    )

    @field_validator(
        "model",
        "model_dir",
        "pin",
        "model_keep_alive",
        "model_alias",
        "image_allow_hosts",
        "allowed_hosts",
        mode="before",
    )
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("model_keep_alive")
    @classmethod
    def _check_keep_alives(cls, value: list[str]) -> list[str]:
        for item in value:
            _parse_keep_alive(item)
        return value

    @field_validator("model_alias")
    @classmethod
    def _check_aliases(cls, value: list[str]) -> list[str]:
        for entry in value:
            name, sep, target = entry.partition("=")
            if not (sep and name.strip() and target.strip()):
                raise ValueError(f"model alias {entry!r} is not NAME=MODEL_ID")
        return value

    @field_validator("otel_endpoint")
    @classmethod
    def _check_otel_endpoint(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"otel_endpoint {value!r} must be an http(s) URL")
        return value

    @field_validator("logfire")
    @classmethod
    def _check_logfire(cls, value: bool) -> bool:
        if value and importlib.util.find_spec("logfire") is None:
            raise ValueError("--logfire needs the logfire package (pip install logfire)")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError(f"unknown log level {value!r}")
        return level

    @model_validator(mode="after")
    def _check_distributed(self) -> Settings:
        if self.distributed and len(self.model) != 1:
            raise ValueError("--distributed serves one model sharded: give exactly one --model")
        return self

    @model_validator(mode="after")
    def _check_routing(self) -> Settings:
        check_routing(self.providers, self.routes)
        return self

    def sub(self, kind: type[C]) -> C:
        """The sub-config `kind`, each field read from the setting it names."""
        return kind.model_validate(self, from_attributes=True)

    def server(self) -> ServerConfig:
        return self.sub(ServerConfig)

    def tracing(self) -> TracingConfig:
        return self.sub(TracingConfig)

    def models(self) -> ModelsConfig:
        return self.sub(ModelsConfig)

    def pool(self) -> PoolConfig:
        return self.sub(PoolConfig)

    def distributed_group(self) -> DistributedConfig:
        return self.sub(DistributedConfig)

    def vision(self) -> VisionConfig:
        return self.sub(VisionConfig)

    def engine(self) -> EngineConfig:
        return self.sub(EngineConfig)

    def routing(self) -> RoutingConfig:
        return self.sub(RoutingConfig)

    def store(self) -> StoreConfig:
        return self.sub(StoreConfig)

    def audit_log(self) -> AuditConfig:
        return self.sub(AuditConfig)


def _parse_keep_alive(item: str) -> tuple[str, float]:
    model_id, sep, seconds = item.rpartition("=")
    try:
        value = float(seconds)
    except ValueError:
        value = -1.0
    if not sep or not model_id or value < 0:
        raise ValueError(f"model_keep_alive entry {item!r} must be ID=SECONDS (SECONDS >= 0)")
    return model_id.strip(), value


class _FromSettings:
    """Marker left by `setting()` until `SubConfig` swaps in the Settings field."""

    __slots__ = ("source",)

    def __init__(self, source: str | None) -> None:
        self.source = source


def setting(source: str | None = None) -> Any:
    """Declare a sub-config field as the Settings field `source` (default: the same name).

    Typed Any so that `name: T = setting()` type-checks and makes the field optional.
    """
    return _FromSettings(source)


def _field_from_settings(owner: str, name: str, source: str) -> FieldInfo:
    """A FieldInfo with the default, bounds and description of Settings' `source`."""
    origin = Settings.model_fields.get(source)
    if origin is None:
        raise TypeError(f"{owner}.{name}: Settings has no field {source!r}")
    # Field takes a default or a factory, never both
    default: dict[str, Any] = (
        {"default_factory": origin.default_factory}
        if origin.default_factory
        else {"default": origin.default}
    )
    field: FieldInfo = Field(
        **default,
        description=origin.description,
        validation_alias=source if source != name else None,
    )
    field.metadata = list(origin.metadata)  # the bounds (ge, gt, le)
    return field


class SubConfig(BaseModel):
    """What one component takes from Settings; every field is `name: T = setting()`."""

    # validate_default: Settings' defaults are in its form (lists, strings), ours in ours.
    model_config = ConfigDict(frozen=True, validate_default=True, populate_by_name=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Runs before pydantic collects the fields, so they are built from these FieldInfos.
        super().__init_subclass__(**kwargs)
        for name in inspect.get_annotations(cls):
            marker = vars(cls).get(name)
            if not isinstance(marker, _FromSettings):
                raise TypeError(
                    f"{cls.__name__}.{name}: write `= setting()`; defaults live in Settings"
                )
            setattr(cls, name, _field_from_settings(cls.__name__, name, marker.source or name))


class ServerConfig(SubConfig):
    """What the HTTP layer needs."""

    host: str = setting()
    port: int = setting()
    max_request_bytes: int = setting()
    large_body_rate_mb: float = setting()
    max_header_bytes: int = setting()
    header_timeout: float = setting()
    body_timeout: float = setting()
    connection_idle_timeout: int = setting()
    max_connections: int | None = setting()
    shutdown_timeout: float = setting()
    log_level: str = setting()
    log_format: Literal["text", "json"] = setting()
    api_key: str | None = setting()
    allowed_hosts: tuple[str, ...] = setting()
    signup: Literal["closed", "approval", "open"] = setting()
    metrics: bool = setting()
    metrics_public: bool = setting()
    model_aliases: tuple[str, ...] = setting("model_alias")  # NAME=MODEL_ID
    max_audio_bytes: int = setting()
    max_audio_seconds: float = setting()


class TracingConfig(SubConfig):
    """What tracing needs: where the spans go, under which service name."""

    endpoint: str | None = setting("otel_endpoint")
    service_name: str = setting("otel_service_name")
    logfire: bool = setting()


class ModelsConfig(SubConfig):
    """What model loading needs."""

    models: tuple[str, ...] = setting("model")
    cache_dir: Path | None = setting()
    hub_timeout_s: float = setting()
    context_length: int | None = setting()
    cpu_float32_max_gb: float = setting()


class EngineConfig(SubConfig):
    """What the engine needs."""

    default_max_tokens: int = setting()
    max_waiting_requests: int = setting()
    prefill_step_size: int = setting()
    paged: bool = setting()
    kv_cache_gb: float = setting()
    block_size: int = setting()
    max_num_seqs: int = setting()
    max_num_batched_tokens: int = setting()
    priority_aging_s: float = setting()
    max_embedding_inputs: int = setting()
    max_embedding_tokens: int = setting()
    max_vision_seqs: int = setting()
    gil_switch_interval_ms: float = setting()


class DistributedConfig(SubConfig):
    """What a sharded group needs: its backend, rank 0's step channel, the join timeout."""

    enabled: bool = setting("distributed")
    backend: str = setting("distributed_backend")
    host: str | None = setting("distributed_host")
    port: int = setting("distributed_port")
    timeout_s: float = setting("distributed_timeout_s")


class VisionConfig(SubConfig):
    """What vision requests need: image fetching and decoding limits."""

    image_allow_hosts: tuple[str, ...] = setting()
    image_fetch_timeout_s: float = setting()
    max_image_bytes: int = setting()
    max_image_pixels: int = setting()
    max_image_side: int = setting()
    max_images_per_request: int = setting()


class PoolConfig(SubConfig):
    """What the model pool needs: limits, pins, idle TTLs and where models are found."""

    max_models: int | None = setting()
    max_memory_gb: float | None = setting()
    memory_limit_pct: float | None = setting()
    pin: tuple[str, ...] = setting()
    keep_alive_s: float | None = setting("keep_alive")
    model_keep_alive: tuple[tuple[str, float], ...] = setting()
    model_dirs: tuple[Path, ...] = setting("model_dir")
    scan_hf_cache: bool = setting()

    @field_validator("model_keep_alive", mode="before")
    @classmethod
    def _parse_keep_alives(cls, value: Any) -> Any:
        # Settings holds ID=SECONDS strings; direct construction may pass pairs already.
        return [_parse_keep_alive(item) if isinstance(item, str) else item for item in value]

    @field_validator("model_dirs")
    @classmethod
    def _expand_dirs(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        return tuple(path.expanduser() for path in value)

    def keep_alive_for(self, model_id: str) -> float | None:
        """Idle seconds before `model_id` is unloaded; None: never (a per-model 0 = never)."""
        for name, seconds in self.model_keep_alive:
            if name == model_id:
                return seconds or None
        return self.keep_alive_s


class RoutingConfig(SubConfig):
    """What the generation seam needs: upstream providers, rules, aliases, failover."""

    providers: tuple[ProviderSettings, ...] = setting()
    routes: tuple[RouteSettings, ...] = setting()
    local_timeouts: LocalTimeouts = setting()
    model_aliases: tuple[str, ...] = setting("model_alias")  # NAME=MODEL_ID
    cooldown_failures: int = setting("failover_cooldown_failures")
    cooldown_s: float = setting("failover_cooldown_s")


class StoreConfig(SubConfig):
    """Where the store lives: the database URL and the data directory (key file, SQLite)."""

    data_dir: Path | None = setting()
    database_url: str | None = setting()

    def resolved_data_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir.expanduser()
        return Path(platformdirs.user_data_dir("mlx-manager"))


class AuditConfig(SubConfig):
    """What the audit log needs: on or off, prompt text or not, flush interval, retention."""

    enabled: bool = setting("audit")
    prompts: bool = setting("audit_prompts")
    flush_ms: int = setting("audit_flush_ms")
    retention_days: int = setting("audit_retention_days")


class _FileSource(PydanticBaseSettingsSource):
    """Values from a config file, below env vars in precedence."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML, TOML or JSON config file into a dict with underscore keys."""
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        data: Any = tomllib.loads(text)
    elif suffix == ".json":
        data = json.loads(text)
    else:
        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of settings")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def load_settings(flags: dict[str, Any], config_file: Path | None = None) -> Settings:
    """Build Settings from explicit flag values, the environment and an optional file."""
    file_values = read_config_file(config_file) if config_file else {}
    unknown = sorted(set(file_values) - set(Settings.model_fields))
    if unknown:
        raise ValueError(f"unknown key(s) in config file {config_file}: {', '.join(unknown)}")

    class _Layered(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _FileSource(settings_cls, file_values))

    return _Layered(**flags)
