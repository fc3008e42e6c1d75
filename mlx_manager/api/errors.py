"""Exception handlers: every error leaves in the caller's protocol shape, never as a trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlx_manager.api.dialect import is_anthropic
from mlx_manager.errors import (
    ApiError,
    InternalError,
    InvalidRequest,
    NotFound,
    RequestTooLarge,
    UnsupportedParameter,
)

log = logging.getLogger(__name__)


def error_response(request: Request, error: ApiError) -> JSONResponse:
    if is_anthropic(request.scope):
        body, status = error.anthropic_body(), error.anthropic_status
    else:
        body, status = error.openai_body(), error.status
    return JSONResponse(body, status_code=status, headers=error.headers)


def validation_error(exc: RequestValidationError) -> ApiError:
    """Pydantic's first complaint as a 400 naming the parameter (never FastAPI's 422)."""
    errors = exc.errors()
    if not errors:
        return InvalidRequest("invalid request body")
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    # Drop pydantic's union-branch labels such as "str" or "list[...]" from the path.
    loc = [p for p in loc if not p.startswith(("str", "list[", "dict[", "int", "function-"))]
    param = ".".join(loc) or None
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        return UnsupportedParameter(
            f"Unsupported parameter: '{param}' is not accepted by this endpoint.", param=param
        )
    if not loc and kind in ("model_attributes_type", "dict_type", "model_type"):
        return InvalidRequest(
            "The request body must be a JSON object (send Content-Type: application/json).",
            code="invalid_json",
        )
    if kind == "json_invalid":
        return InvalidRequest("The request body is not valid JSON.", code="invalid_json")
    if kind == "missing":
        return InvalidRequest(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    return InvalidRequest(
        f"Invalid value for '{param}': {first.get('msg', 'invalid')}.",
        param=param,
        code="invalid_value",
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error: ApiError
        if exc.status_code == 404:
            error = NotFound(f"No route for {request.method} {request.url.path}.")
        elif exc.status_code == 413:
            error = RequestTooLarge(str(exc.detail))
        else:
            error = InvalidRequest(str(exc.detail))
            error.status = exc.status_code  # type: ignore[misc]
        return error_response(request, error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, InternalError("The server hit an internal error."))
