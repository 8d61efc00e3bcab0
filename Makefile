# pocketpost: `make run` starts the demo server under micropython; `make test` runs every test.
# Both set themselves up (apt packages, .venv with pinned pip packages, stubs) on a fresh machine.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done
APT_STAMP := .apt-done

.PHONY: setup test run bench clean deploy

$(APT_STAMP): apt-packages.txt
	@if command -v apt-get >/dev/null 2>&1; then \
	  missing=""; for p in $$(cat apt-packages.txt); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo "apt: installing$$missing"; \
	    SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	else echo "apt-get not found: install $$(cat apt-packages.txt | tr '\n' ' ') yourself"; fi
	@touch $@

$(STAMP): requirements-dev.txt requirements-stubs.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements-dev.txt
	rm -rf typings-esp32
	$(BIN)/pip install -q --target typings-esp32 -r requirements-stubs.txt
	@touch $@

setup: $(APT_STAMP) $(STAMP)

test: setup
	$(BIN)/python -m pytest -v $(PYTEST_ARGS)

run: setup
	$(BIN)/python tools/run_host.py $(RUN_ARGS)

bench: setup
	$(BIN)/python tools/bench_all.py

clean:
	rm -rf $(VENV) typings-esp32 build $(APT_STAMP)

# --- board: deploy to an ESP32 (or the pseudo-board) with mpremote; see docs/BOARD.md --------
BOARD ?= esp32
PORT ?= /dev/ttyUSB0

deploy: setup
	$(BIN)/python tools/deploy.py --board $(BOARD) --port $(PORT) $(DEPLOY_ARGS)

# The unix micropython REPL behind a pty with a littlefs image at /flash (until Ctrl-C).
pseudoboard: setup
	$(BIN)/python tools/pseudoboard.py $(PSEUDOBOARD_ARGS)
