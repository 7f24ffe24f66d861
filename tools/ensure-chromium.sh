#!/bin/sh
# Make sure a headless Chromium is installed for the status page tests, which load the page in a
# real browser, read its DOM and take a phone-sized screenshot (tests/test_status_page_browser.py).
# A quick no-op when it is there; otherwise installs Debian's `chromium` package.
set -eu
. "$(dirname "$0")/apt.sh"

found() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

found && exit 0
apt_root ensure-chromium "Chromium (headless, for the status page tests)"

echo "ensure-chromium: chromium not found; installing Debian's chromium package"
apt_install chromium

found || { echo "ensure-chromium: chromium installed, yet still not found" >&2; exit 1; }
