#!/usr/bin/env bash
# Install famevil with its test dependencies and run the test suite. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/_venv.sh" "[test]"
python -m pytest "$@"
