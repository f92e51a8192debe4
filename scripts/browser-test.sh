#!/usr/bin/env bash
# Check the HTML report in a real headless Chromium (the tests marked browser:
# tests/test_report_browser.py, tests/test_report_posters_browser.py,
# tests/test_report_verdicts_browser.py).
# Installs Debian's chromium when no browser is found (needs root and the Debian mirrors).
# Extra arguments go to pytest, e.g. scripts/browser-test.sh -k filters
# BATCHVEO_UPDATE_SCREENSHOT=1 scripts/browser-test.sh  also refreshes docs/report.png.
set -euo pipefail
cd "$(dirname "$0")/.."

have_browser() {
    [ -n "${BATCHVEO_CHROMIUM:-}" ] && [ -x "${BATCHVEO_CHROMIUM}" ] && return 0
    [ -x /usr/bin/chromium ] && return 0
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
        || command -v google-chrome >/dev/null 2>&1
}

if ! have_browser; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "browser-test: no chromium found; install it (apt-get install chromium) or run as root" >&2
        exit 2
    fi
    echo "browser-test: installing chromium from the Debian packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y chromium fonts-dejavu-core
fi

if [ ! -x .venv/bin/python ]; then
    echo "browser-test: no .venv; run make venv first" >&2
    exit 2
fi
exec .venv/bin/python -m pytest -m browser tests -v "$@"
