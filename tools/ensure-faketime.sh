#!/bin/sh
# Make sure `faketime` (libfaketime) is installed for the clock-skew tests, which run a replica
# with its clock an hour fast or slow (tests/test_ha_promises.py).
# A quick no-op when it is there; otherwise installs Debian's `faketime` package.
set -eu

found() {
    command -v faketime >/dev/null 2>&1
}

found && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-faketime: faketime not found and there is no apt-get; install libfaketime's" \
        "faketime command yourself" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "ensure-faketime: faketime not found; run as root, or install sudo, to install it" >&2
    exit 1
fi

run() {
    echo "+ $*"
    "$@"
}

echo "ensure-faketime: faketime not found; installing Debian's faketime package"
run $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
run $as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends faketime

found || { echo "ensure-faketime: faketime installed, yet still not found" >&2; exit 1; }
