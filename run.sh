#!/usr/bin/env bash
# One entry point that installs what it needs, then runs:
#   bash run.sh app [app.py flags]   launch the app on http://127.0.0.1:7860
#   bash run.sh test [pytest args]   run the test suite (2 workers; -n 0 for one process)
#   bash run.sh cli ARGS...          python cli.py ARGS in the project venv
# The venv lives in .venv and is (re)installed when requirements*.txt change.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

stamp() { cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16; }

ensure_venv() {
  if [[ ! -x $VENV/bin/python ]]; then
    echo "creating $VENV with $($PY --version)" >&2
    "$PY" -m venv "$VENV"
  fi
  if [[ "$(cat $VENV/.req-stamp 2>/dev/null)" != "$(stamp)" ]]; then
    echo "installing requirements into $VENV (first run takes a few minutes)" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -r requirements-dev.txt >&2
    stamp > "$VENV/.req-stamp"
  fi
}

# The browser test drives Debian's Chromium (Playwright's own browser download is blocked here).
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 && return
  if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) == 0 ]]; then
    echo "installing Debian chromium for the browser test" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
  else
    echo "warning: no chromium on PATH; tests/app/test_browser.py will fail (apt-get install chromium)" >&2
  fi
}

cmd=${1:-app}
shift || true
ensure_venv
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}
case "$cmd" in
  app)  exec "$VENV/bin/python" app.py "$@" ;;
  # two xdist workers, a module each at a time (module fixtures are shared), in collection order:
  # tests/conftest.py puts the longest modules first and gives each process one OpenMP thread
  test) ensure_chromium; exec "$VENV/bin/python" -m pytest -q -n 2 --dist loadscope --no-loadscope-reorder "$@" ;;
  cli)  exec "$VENV/bin/python" cli.py "$@" ;;
  *) echo "usage: bash run.sh app|test|cli [args]" >&2; exit 2 ;;
esac
