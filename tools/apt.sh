# Sourced by tools/ensure-*.sh: install a Debian package as root (directly, or through sudo).
# `apt_root WHO WHAT` sets $as_root or exits with one line; `run` echoes and runs a command;
# `apt_install PACKAGE` updates the lists and installs it without recommends.

apt_root() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$1: $2 not found and there is no apt-get; install it yourself" >&2
        exit 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        as_root=""
    elif command -v sudo >/dev/null 2>&1; then
        as_root="sudo"
    else
        echo "$1: $2 not found; run as root, or install sudo, to install it" >&2
        exit 1
    fi
}

run() {
    echo "+ $*"
    "$@"
}

apt_install() {
    run $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    run $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$1"
}
