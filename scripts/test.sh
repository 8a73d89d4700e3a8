#!/usr/bin/env bash
# Set up (if needed) and run everything CI runs: lint, type check, the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
lint_dirs=$(ls -d src tests bench tools examples 2>/dev/null || true)
.venv/bin/ruff check $lint_dirs
.venv/bin/ruff format --check $lint_dirs
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
