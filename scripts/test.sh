#!/usr/bin/env bash
# Set up (if needed) and run everything CI runs: lint, type check, the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check src tests bench tools
.venv/bin/ruff format --check src tests bench tools
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
