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


# pydantic's error types -> OpenAI's error codes (the ones its API answers with).
_CODE_OF_KIND = {
    "missing": "missing_required_parameter",
    "json_invalid": "invalid_json",
    "string_unicode": "invalid_unicode",
    "string_too_short": "string_below_min_length",
    "string_too_long": "string_above_max_length",
    "too_long": "array_above_max_length",
}
_BOUNDS = {
    "greater_than": "below_min_value",
    "greater_than_equal": "below_min_value",
    "less_than": "above_max_value",
    "less_than_equal": "above_max_value",
}


def validation_code(kind: str, value: object) -> str:
    """A meaningful `code` for a pydantic error type (`value`: the input it refused)."""
    if kind in _CODE_OF_KIND:
        return _CODE_OF_KIND[kind]
    if kind == "too_short":
        return "empty_array" if value == [] else "array_below_min_length"
    if kind in _BOUNDS:
        number = "integer" if isinstance(value, int) else "decimal"
        return f"{number}_{_BOUNDS[kind]}"
    if kind.endswith(("_type", "_parsing")) or kind in ("model_attributes_type", "is_instance_of"):
        return "invalid_type"
    return "invalid_value"  # literal_error, union_tag_invalid, value_error, ...


def validation_error(exc: RequestValidationError) -> ApiError:
    """Pydantic's first complaint as a 400 naming the parameter (never FastAPI's 422)."""
    errors = exc.errors()
    if not errors:
        return InvalidRequest("invalid request body", code="invalid_request_body")
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
        code=validation_code(kind, first.get("input")),
    )


# Codes for the framework's own HTTP errors (routing and body parsing).
_HTTP_CODES = {
    400: "invalid_request_body",  # a body that could not be parsed (e.g. not UTF-8)
    405: "method_not_allowed",
    415: "unsupported_media_type",
}


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
            code = _HTTP_CODES.get(exc.status_code, "invalid_request")
            error = InvalidRequest(str(exc.detail), code=code)
            error.status = exc.status_code  # type: ignore[misc]
        return error_response(request, error)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, InternalError("The server hit an internal error."))
