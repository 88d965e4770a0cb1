#!/usr/bin/env bash
# Install famevil with its test dependencies, check lint and formatting, and run the whole test suite
# (both tiers: the fast tests and those marked slow). Extra arguments go to pytest, e.g.
#   bash scripts/test.sh -m "not slow"    # the fast tier only
set -euo pipefail
# The web page's test drives a real browser: Debian's chromium and its driver, installed here when
# missing and this user may (elsewhere that test is skipped and says why).
if ! command -v chromedriver >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing chromium and chromium-driver for the web page's test" >&2
    { apt-get install -y -qq chromium chromium-driver || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }; } >/dev/null 2>&1 ||
        echo "could not install chromium; the web page's test will be skipped" >&2
fi
source "$(dirname "$0")/_venv.sh" "[test]"
python -m ruff check .
python -m ruff format --check .
python -m pytest "$@"
