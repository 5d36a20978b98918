#!/bin/sh
# Make sure the brokers alertd and its tests talk to are answering on their usual ports.
# Usage: scripts/services.sh redis|rabbitmq|all
# A service that already answers is left alone; otherwise a throwaway one is started from the
# installed binary (state under ./var, nothing persisted). Missing binaries get a clear message.
set -eu
cd "$(dirname "$0")/.."
VAR="$PWD/var"
mkdir -p "$VAR"

port_open() { # host port
    python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(0 if s.connect_ex(('$1', $2)) == 0 else 1)"
}

wait_port() { # host port seconds what
    i=0
    while ! port_open "$1" "$2"; do
        i=$((i + 1))
        if [ "$i" -gt $(($3 * 4)) ]; then echo "alertd: $4 did not start on $1:$2 within $3 s" >&2; return 1; fi
        sleep 0.25
    done
}

ensure_redis() {
    if port_open 127.0.0.1 6379; then return 0; fi
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "alertd: no Redis answers on 127.0.0.1:6379 and redis-server is not installed." >&2
        echo "        Install it (Debian: sudo apt-get install redis-server) or point 'broker:' in alertd.yaml at yours." >&2
        return 1
    fi
    echo "alertd: starting a throwaway redis-server on 127.0.0.1:6379 (logs: var/redis.log)" >&2
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir "$VAR" --pidfile "$VAR/redis.pid" --logfile "$VAR/redis.log"
    wait_port 127.0.0.1 6379 10 redis-server
}

ensure_rabbitmq() {
    if port_open 127.0.0.1 5672; then return 0; fi
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        echo "alertd: no RabbitMQ answers on 127.0.0.1:5672 and rabbitmq-server is not installed." >&2
        echo "        The test suite runs against both brokers. Debian: sudo apt-get install rabbitmq-server" >&2
        return 1
    fi
    echo "alertd: starting rabbitmq-server (this takes a few seconds)" >&2
    rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_port 127.0.0.1 5672 90 rabbitmq-server
}

case "${1:-all}" in
    redis) ensure_redis ;;
    rabbitmq) ensure_rabbitmq ;;
    all) ensure_redis && ensure_rabbitmq ;;
    *) echo "usage: $0 redis|rabbitmq|all" >&2; exit 2 ;;
esac
