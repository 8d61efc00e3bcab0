#!/usr/bin/env bash
# make setup: the apt packages, then a .venv with the pinned packages and the ESP32 stubs.
#
# Correct whatever state the folder is in. The venv is reused only when its stamp says it was
# finished by this script for this folder, this interpreter and these requirement files, and its
# python still runs; otherwise (missing, made by another Python or in another folder, a pip run
# that was interrupted, requirements changed) it is removed and rebuilt. The stamp is written
# last, so an interrupted set-up is never taken for a finished one.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd -P)
PY=${PY:-python3}
VENV=.venv
STAMP=$VENV/.setup-done

# --- apt packages (through sudo when not root) -------------------------------------------------
if command -v dpkg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $(grep -v '^#' apt-packages.txt); do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    echo "setup: apt: installing$missing"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    # postfix (the SMTP tests' relay runs from its own config folder): no system mail service.
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections 2>/dev/null || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
else
  echo "setup: apt-get not found: install these yourself: $(grep -v '^#' apt-packages.txt | tr '\n' ' ')"
fi

# --- the venv -------------------------------------------------------------------------------------
pyexe=$(command -v "$PY") || { echo "setup: $PY not found (Python 3.11 is needed)" >&2; exit 1; }
pyreal=$("$pyexe" -c 'import sys, os; print(os.path.realpath(sys.executable))')
"$pyexe" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' \
  || { echo "setup: $pyexe is $("$pyexe" -V 2>&1); Python 3.11 or newer is needed" >&2; exit 1; }
want="folder=$top
python=$pyreal
$(cat requirements-dev.txt requirements-stubs.txt | sha256sum | cut -d' ' -f1)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -d typings-esp32 ] \
   && "$VENV/bin/python" -c 'import sys; sys.exit(0)' 2>/dev/null; then
  exit 0
fi

if [ -e "$VENV" ]; then
  echo "setup: $VENV is missing its stamp or was made elsewhere (another folder, Python or requirements): rebuilding it"
  rm -rf "$VENV"
fi
echo "setup: creating $VENV with $pyreal"
"$pyexe" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
# Stubs go into their own folder (installed beside the dev packages they clash).
rm -rf typings-esp32 typings-esp32.tmp
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --target typings-esp32.tmp -r requirements-stubs.txt
mv typings-esp32.tmp typings-esp32
printf '%s' "$want" > "$STAMP"
echo "setup: done"
