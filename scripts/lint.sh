#!/usr/bin/env bash
# The lint and layering gates `make test` runs before the tests (each fails the run):
#   ruff          pyflakes/pycodestyle/bugbear over the whole tree (ruff.toml)
#   lint-imports  the substrate below the systems, the systems independent of each other,
#                 no import cycles inside a package (.importlinter)
#   mypy          the substrate and the pure TE library (mypy.ini)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.venv/bin"
cd "$ROOT"
rc=0
run() {
  local name="$1"; shift
  local t0=$SECONDS
  if "$@"; then
    printf '[lint] %s: ok (%ds)\n' "$name" "$((SECONDS - t0))"
  else
    printf '[lint] %s: FAILED\n' "$name" >&2
    rc=1
  fi
}
run ruff "$BIN/ruff" check --quiet .
run lint-imports "$BIN/lint-imports" --no-cache
run mypy "$BIN/mypy"
exit "$rc"
