#!/bin/sh
# Make sure PostgreSQL's server binaries (initdb, pg_ctl, postgres) are installed for the tests,
# which start a private server of their own (tests/fakes/postgres.py). Starts no cluster.
# A quick no-op when they are there; otherwise installs Debian's `postgresql` package.
set -eu
. "$(dirname "$0")/apt.sh"

found() {
    command -v initdb >/dev/null 2>&1 && return 0
    for bin in /usr/lib/postgresql/*/bin /usr/local/pgsql/bin; do
        [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && [ -x "$bin/postgres" ] && return 0
    done
    return 1
}

found && exit 0
apt_root ensure-postgres "PostgreSQL's server binaries (initdb, pg_ctl, postgres)"

echo "ensure-postgres: initdb not found; installing Debian's postgresql package"
# Debian's package would create and start a `main` cluster: the tests need none.
run $as_root mkdir -p /etc/postgresql-common/createcluster.d
echo "+ echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/datafold-notifier-tests.conf"
echo "create_main_cluster = false" |
    $as_root tee /etc/postgresql-common/createcluster.d/datafold-notifier-tests.conf >/dev/null
apt_install postgresql

found || { echo "ensure-postgres: postgresql installed, yet initdb is still not found" >&2; exit 1; }
