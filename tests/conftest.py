"""Shared fixtures: the embedded model and a live server on loopback."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from mlx_manager.models.default_model import DEFAULT_MODEL_NAME, ensure_embedded_model
from tests.fixtures.browser import browser, ui_server
from tests.fixtures.embeddings import embeddings_server, minilm_dir
from tests.fixtures.fake_upstream import fake_upstream
from tests.fixtures.pool_models import pool_model_root
from tests.fixtures.postgres import postgres_server, postgres_url
from tests.fixtures.server import ServerProcess
from tests.fixtures.speech import fox_wav, whisper_dir
from tests.fixtures.tiny_models import tiny_model_dirs
from tests.fixtures.vision_models import tiny_smolvlm_dir

# Session fixtures shared by every test package.
__all__ = [
    "browser",
    "embeddings_server",
    "fake_upstream",
    "fox_wav",
    "minilm_dir",
    "pool_model_root",
    "postgres_server",
    "postgres_url",
    "tiny_model_dirs",
    "tiny_smolvlm_dir",
    "ui_server",
    "whisper_dir",
]

# An app built in-process opens its store in the data directory: never the user's own.
os.environ.setdefault("MLX_MANAGER_DATA_DIR", tempfile.mkdtemp(prefix="mlx-manager-tests-"))

MODEL = DEFAULT_MODEL_NAME
ALIAS = "claude-sonnet-4-6"  # the session server maps this name to MODEL
# Small enough that a test can exceed it cheaply.
TEST_BODY_LIMIT = 200_000


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return ensure_embedded_model()


@pytest.fixture(scope="session")
def server(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        "--max-request-bytes",
        str(TEST_BODY_LIMIT),
        "--model-alias",
        f"{ALIAS}={MODEL}",
        log_dir=tmp_path_factory.mktemp("server"),
    )
    try:
        yield process.wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="session")
def anthropic_client(server: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=server.base_url, api_key="unused", max_retries=0, timeout=120
    )


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=120
    )
