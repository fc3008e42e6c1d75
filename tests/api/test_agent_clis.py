"""Claude Code and Codex CLI, run headless against a real server: every request they send is
answered 2xx, and each completes a session with a tool turn.

The CLIs come from npm (`make agent-clis` installs them under .agent-clis/; `make test` tries
to); without them these tests skip. No Anthropic or OpenAI host is reached: each CLI's
nonessential traffic is off and its base URL is the server's.

The model is scripted (tests/fixtures/scripted_model.py): a tiny model with a large context
that calls one of the CLI's tools (Bash for Claude Code, exec_command or apply_patch for
Codex), then answers once the tool result is back. So each session is two model requests,
the second carrying the CLI's own tool result; the tool really runs (its output or the file
it wrote is checked).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.scripted_model import build_scripted_model
from tests.fixtures.server import ServerProcess

BIN = Path(__file__).resolve().parents[2] / ".agent-clis" / "node_modules" / ".bin"
CLAUDE = BIN / "claude"
CODEX = BIN / "codex"
MODEL = "scripted"
CODEX_ALIAS = "gpt-5.5"  # Codex's own model name: it then sends apply_patch and tool_search
MARKER = "scripted-tool-ran"
ANSWER = "Done: the tool ran."
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello from apply_patch\n*** End Patch\n"
CLI_TIMEOUT_S = 240
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


def _needs(binary: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not binary.exists(),
        reason=f"{binary.name} is not installed under .agent-clis/ (run `make agent-clis`)",
    )


@pytest.fixture(scope="module")
def agent_server(
    smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    if not CLAUDE.exists() and not CODEX.exists():
        pytest.skip("no agent CLI under .agent-clis/ (run `make agent-clis`)")
    model_dir = build_scripted_model(
        tmp_path_factory.mktemp("scripted") / MODEL,
        smollm2_dir,  # its tokenizer: agent prompts come to ~10k-20k tokens
        {
            "apply_patch": {"input": PATCH},
            "Bash": {"command": f"echo {MARKER}", "description": "Print a marker"},
            "exec_command": {"cmd": f"echo {MARKER}"},
        },
        ANSWER,
    )
    server = ServerProcess(
        "--model",
        f"{MODEL}={model_dir}",
        "--context-length",
        "131072",  # Claude Code asks for 32k new tokens after a ~20k-token prompt
        "--kv-cache-gb",
        "1",
        "--model-alias",
        f"{CODEX_ALIAS}={MODEL}",
        log_dir=tmp_path_factory.mktemp("agent-server"),
    )
    try:
        server.wait_ready()
        _wait_loaded(server)
        yield server
    finally:
        server.stop()


def _wait_loaded(server: ServerProcess, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if httpx.get(f"{server.base_url}/v1/models/{MODEL}").json().get("loaded"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{MODEL} not loaded:\n{server.log()}")


def requests_since(server: ServerProcess, offset: int) -> list[tuple[str, str, int]]:
    """(method, path, status) of each request in the server's access log after `offset`."""
    lines = server.log()[offset:].splitlines()
    return [
        (m["method"], m["path"], int(m["status"]))
        for m in map(ACCESS_LINE.search, lines)
        if m is not None
    ]


def run_cli(
    server: ServerProcess, command: list[str], cwd: Path, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], list[tuple[str, str, int]]]:
    offset = len(server.log())
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )
    time.sleep(0.2)  # the last access line is written after the reply
    requests = requests_since(server, offset)
    failed = [r for r in requests if r[2] >= 400]
    assert not failed, f"{failed}\n{done.stdout}\n{done.stderr}\n{server.log()[offset:]}"
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done, requests


@_needs(CLAUDE)
def test_claude_code_runs_a_tool_turn(agent_server: ServerProcess, tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": agent_server.base_url,
        "ANTHROPIC_API_KEY": "sk-unused",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    command = [str(CLAUDE), "-p", "Run echo with the Bash tool, then say you are done."]
    command += ["--model", MODEL, "--output-format", "json", "--allowedTools", "Bash"]
    done, requests = run_cli(agent_server, command, work, env)

    result = json.loads(done.stdout)
    assert (result["is_error"], result["result"], result["num_turns"]) == (False, ANSWER, 2)
    messages = [(m, p.split("?")[0]) for m, p, _ in requests if m == "POST"]
    assert messages == [("POST", "/v1/messages")] * 2, requests
    # The tool ran and its output went back in the second request.
    transcript = "".join(p.read_text() for p in (home / ".claude" / "projects").rglob("*.jsonl"))
    results = [
        block
        for line in transcript.splitlines()
        for block in _content(json.loads(line))
        if block.get("type") == "tool_result"
    ]
    assert [(r["content"], r["is_error"]) for r in results] == [(MARKER, False)]


def _content(entry: dict[str, object]) -> list[dict[str, object]]:
    message = entry.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _codex(
    server: ServerProcess, tmp_path: Path, model: str, prompt: str
) -> tuple[list[dict[str, object]], list[tuple[str, str, int]], Path]:
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "local"\n'
        # Codex offers OpenAI's hosted web search by default; a local server refuses hosted
        # tools (README, field policy), so it is switched off as for any local provider.
        'web_search = "disabled"\n'
        "[model_providers.local]\n"
        'name = "local"\n'
        f'base_url = "{server.base_url}/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "LOCAL_API_KEY"\n'
    )
    env = {"CODEX_HOME": str(home), "LOCAL_API_KEY": "unused", "RUST_LOG": "error"}
    command = [str(CODEX), "exec", "--json", "--skip-git-repo-check"]
    command += ["--sandbox", "workspace-write", prompt]
    done, requests = run_cli(server, command, work, env)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [(m, p) for m, p, _ in requests] == [("POST", "/v1/responses")] * 2, requests
    messages = [
        e["item"]["text"]
        for e in events
        if e.get("type") == "item.completed" and e["item"]["type"] == "agent_message"
    ]
    assert messages == [ANSWER], done.stdout
    return events, requests, work


@_needs(CODEX)
def test_codex_runs_a_shell_tool_turn(agent_server: ServerProcess, tmp_path: Path) -> None:
    events, _, _ = _codex(agent_server, tmp_path, MODEL, "Run echo, then say you are done.")
    commands = [
        e["item"]
        for e in events
        if e.get("type") == "item.completed" and e["item"]["type"] == "command_execution"
    ]
    # The last line: the sandbox's shell may print its own noise first (pyenv's rehash warning).
    outputs = [(c["exit_code"], c["aggregated_output"].strip().splitlines()[-1:]) for c in commands]
    assert outputs == [(0, [MARKER])]


@_needs(CODEX)
def test_codex_applies_a_patch_through_a_custom_tool(
    agent_server: ServerProcess, tmp_path: Path
) -> None:
    """Under its own model name Codex sends apply_patch as a custom (freeform) tool and a
    client-run tool_search: the call goes out as a custom_tool_call and Codex applies it."""
    events, _, work = _codex(agent_server, tmp_path, CODEX_ALIAS, "Create hello.txt.")
    changes = [
        e["item"]
        for e in events
        if e.get("type") == "item.completed" and e["item"]["type"] == "file_change"
    ]
    assert [c["status"] for c in changes] == ["completed"], events
    assert (work / "hello.txt").read_text() == "hello from apply_patch\n"
