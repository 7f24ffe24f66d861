#!/bin/sh
# Make sure Prometheus Alertmanager's server is installed for the tests, which start a private
# one of their own (tests/fakes/alertmanager.py) with no clustering, on 127.0.0.1.
# A quick no-op when it is there; otherwise installs Debian's `prometheus-alertmanager` package
# (whose service, if the package starts one, the tests do not use).
set -eu
. "$(dirname "$0")/apt.sh"

found() {
    command -v prometheus-alertmanager >/dev/null 2>&1 || [ -x /usr/bin/prometheus-alertmanager ]
}

found && exit 0
apt_root ensure-alertmanager "Prometheus Alertmanager (prometheus-alertmanager)"

echo "ensure-alertmanager: prometheus-alertmanager not found; installing Debian's package"
apt_install prometheus-alertmanager

found || { echo "ensure-alertmanager: installed, yet prometheus-alertmanager is still not found" >&2; exit 1; }
