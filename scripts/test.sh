#!/usr/bin/env bash
# The one test entry point: install, lint, type-check, run the suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

python3 -m ruff check corral tests benchmarks examples
python3 -m mypy
status=0
python3 -m pytest --durations=25 "$@" || status=$?
# pytest exits 5 when it collected nothing: that is a failure here, never a pass.
exit "$status"
