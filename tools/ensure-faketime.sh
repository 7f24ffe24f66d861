#!/bin/sh
# Make sure `faketime` (libfaketime) is installed for the clock-skew tests, which run a replica
# with its clock an hour fast or slow (tests/test_ha_promises.py).
# A quick no-op when it is there; otherwise installs Debian's `faketime` package.
set -eu
. "$(dirname "$0")/apt.sh"

found() {
    command -v faketime >/dev/null 2>&1
}

found && exit 0
apt_root ensure-faketime "libfaketime's faketime command"

echo "ensure-faketime: faketime not found; installing Debian's faketime package"
apt_install faketime

found || { echo "ensure-faketime: faketime installed, yet still not found" >&2; exit 1; }
