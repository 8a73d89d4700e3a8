#!/usr/bin/env bash
# Set up (if needed) and run the core benchmark (not part of the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec .venv/bin/python bench/bench_core.py "$@"
