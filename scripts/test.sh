#!/usr/bin/env bash
# Install famevil with its test dependencies, check lint and formatting, and run the whole test suite
# (both tiers: the fast tests and those marked slow). Extra arguments go to pytest, e.g.
#   bash scripts/test.sh -m "not slow"    # the fast tier only
set -euo pipefail
source "$(dirname "$0")/_venv.sh" "[test]"
python -m ruff check .
python -m ruff format --check .
python -m pytest "$@"
