#!/usr/bin/env bash
# The whole test suite on real models and real processes; exit 5 (no tests ran) counts as failure.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -ra "$@"
