#!/usr/bin/env bash
# Set up (if needed) and run the demo: sign, serve the certificate on loopback, fetch and verify.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --demo     # secsipid and its runtime dependencies, nothing for development
exec .venv/bin/secsipid demo "$@"
