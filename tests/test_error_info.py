"""ErrorInfo: how an engine failure crosses to the request side as plain data."""

from __future__ import annotations

import pickle

from mlx_manager.errors import (
    ContextLengthExceeded,
    ErrorInfo,
    InternalError,
    ModelLoading,
)


def test_an_api_error_comes_back_as_itself() -> None:
    error = ContextLengthExceeded("too long", param="messages", anthropic_message="prompt is")
    info = ErrorInfo.of(error)
    assert info.is_client_error
    back = pickle.loads(pickle.dumps(info)).api_error()  # plain data: crosses a process too
    assert type(back) is ContextLengthExceeded and back.status == 400
    assert (back.message, back.param, back.code) == ("too long", "messages", error.code)
    assert back.anthropic_body() == error.anthropic_body()


def test_headers_survive() -> None:
    back = ErrorInfo.of(ModelLoading("wait", retry_after_s=2)).api_error()
    assert type(back) is ModelLoading and back.headers == {"Retry-After": "2"}
    assert back.anthropic_status == 529


def test_a_bug_becomes_a_500_naming_only_its_kind() -> None:
    info = ErrorInfo.of(RuntimeError("secret detail /home/x"))
    assert not info.is_client_error
    back = info.api_error()
    assert type(back) is InternalError
    assert back.message == "generation failed: RuntimeError"


def test_messages_for_clients_lose_absolute_paths_not_urls() -> None:
    from mlx_manager.errors import without_paths

    assert without_paths("bad header in /home/u/.cache/m/model.safetensors") == (
        "bad header in model.safetensors"
    )
    assert without_paths(r"C:\Users\me\m.bin is short") == "m.bin is short"
    kept = "see https://huggingface.co/org/model, ratio 1/2, a/b relative"
    assert without_paths(kept) == kept
