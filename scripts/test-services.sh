#!/usr/bin/env bash
# Starts (or stops) a throw-away PostgreSQL and Redis on loopback for the
# cluster tests, from Debian's packages; installs them when missing.
#
#   eval "$(scripts/test-services.sh start DIR)"   # prints the exports
#   scripts/test-services.sh stop DIR
#
# DIR holds both data directories and the PID files; delete it after stop.
set -euo pipefail
cmd="${1:?start|stop}"
dir="${2:?directory}"
# A free loopback port (the OS picks it), unless one is given.
free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
pg_port="${HERALD_TEST_PG_PORT:-$(free_port)}"
redis_port="${HERALD_TEST_REDIS_PORT:-$(free_port)}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
  return 1
}

case "$cmd" in
  start)
    if ! pg_bin >/dev/null || ! command -v redis-server >/dev/null; then
      as_root apt-get update -qq >&2
      as_root apt-get install -y -qq postgresql redis-server >&2
    fi
    bin="$(pg_bin)"
    mkdir -p "$dir/pg" "$dir/redis"
    # PostgreSQL refuses to run as root: run it as the package's postgres user.
    run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir/pg"; chmod 700 "$dir/pg"; chmod o+x "$dir"; fi
    run_pg "$bin/initdb" -D "$dir/pg/data" -U herald --auth=trust -E UTF8 >/dev/null
    run_pg "$bin/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/log" -w \
      -o "-c listen_addresses=127.0.0.1 -c port=$pg_port -c unix_socket_directories=$dir/pg -c fsync=off -c max_connections=300" start >&2
    redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir/redis" --save '' --appendonly no \
      --daemonize yes --pidfile "$dir/redis/redis.pid" --logfile "$dir/redis/log" >&2
    for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    echo "export HERALD_TEST_DATABASE_URL=postgres://herald@127.0.0.1:$pg_port/postgres"
    echo "export HERALD_TEST_REDIS_URL=redis://127.0.0.1:$redis_port"
    ;;
  stop)
    bin="$(pg_bin)" || true
    if [ -f "$dir/pg/data/postmaster.pid" ]; then
      if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bin/pg_ctl" -D "$dir/pg/data" -m fast stop >&2 || true
      else "$bin/pg_ctl" -D "$dir/pg/data" -m fast stop >&2 || true; fi
    fi
    if [ -f "$dir/redis/redis.pid" ]; then
      pid="$(cat "$dir/redis/redis.pid")"
      kill "$pid" 2>/dev/null || true
      # Redis removes its PID file and closes its log as it exits: wait for
      # that, so the caller can delete DIR without racing it.
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
