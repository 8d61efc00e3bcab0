# pocketpost: `make run` starts the demo server under micropython; `make test` runs every test.
# Both set themselves up (apt packages, .venv with pinned pip packages, stubs) on a fresh machine.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test run bench clean deploy pseudoboard export

# Always run: tools/setup.sh checks the venv's stamp (this folder, this Python, these pins) and
# rebuilds a missing, stale or half-made venv; when all is in place it returns at once.
setup:
	@PY=$(PY) bash tools/setup.sh

# Two workers (pytest-xdist): most tests wait on timeouts, peers and subprocesses, so a second
# worker fills the idle core (11 min -> 6.5 min on 2 cores); worksteal evens out the long tests.
test: setup
	$(BIN)/python -m pytest -v -n 2 --dist worksteal $(PYTEST_ARGS)

run: setup
	$(BIN)/python tools/run_host.py $(RUN_ARGS)

bench: setup
	$(BIN)/python tools/bench_all.py

clean:
	rm -rf $(VENV) typings-esp32 typings-esp32.tmp build

# --- board: deploy to an ESP32 (or the pseudo-board) with mpremote; see docs/BOARD.md --------
BOARD ?= esp32
PORT ?= /dev/ttyUSB0

deploy: setup
	$(BIN)/python tools/deploy.py --board $(BOARD) --port $(PORT) $(DEPLOY_ARGS)

# Every mailbox of the board at PORT (or an image file) into DIR/<mailbox>/ as Maildir (docs/MIGRATE.md).
export: setup
	$(BIN)/python tools/ppadmin.py export $(PORT) --maildir $(DIR) --progress

# The unix micropython REPL behind a pty with a littlefs image at /flash (until Ctrl-C).
pseudoboard: setup
	$(BIN)/python tools/pseudoboard.py $(PSEUDOBOARD_ARGS)
