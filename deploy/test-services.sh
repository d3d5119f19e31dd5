#!/usr/bin/env bash
# Test servers for the integration tests: Kafka + Elasticsearch (noida-db) and a fresh PostgreSQL database.
#
#   eval "$(deploy/test-services.sh start)"   # prints `export ...` lines on stdout, diagnostics on stderr
#   pytest ...
#   deploy/test-services.sh stop              # uses $YUQING_TEST_SERVICES_STATE (or: stop <state-dir>)
#   deploy/test-services.sh run pytest -q     # start, run the command, stop; exits with the command's status
#
# start:
#   - YUQING_KAFKA_BOOTSTRAP / YUQING_ES_URL already set -> that service is not started (a real cluster is
#     targeted) and the value is echoed back; otherwise noida-db serves it on free ports of 127.0.0.1.
#   - YUQING_DATABASE_URL set -> no database is created; otherwise a new database yuqing_test_<random> is
#     created on 127.0.0.1:5432 (user postgres, trust auth) and exported as YUQING_TEST_DATABASE_URL.
#     PostgreSQL unreachable -> a warning, and the variable is not exported (tests skip, or fail under CI).
#   - exports YUQING_TEST_SERVICES_STATE=<dir> (pid, log, data, database name) for `stop`.
#   - exit status 1 when noida-db does not answer within $YUQING_TEST_SERVICES_WAIT seconds (default 60).
# stop: ends the noida-db process group started by `start`, drops the database, removes the state dir.
# Several runs may be active at once (parallel `make test`): each gets its own ports, data and database.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
WAIT_S="${YUQING_TEST_SERVICES_WAIT:-60}"
PG_HOST="${YUQING_TEST_PG_HOST:-127.0.0.1}"
PG_PORT="${YUQING_TEST_PG_PORT:-5432}"
PG_USER="${YUQING_TEST_PG_USER:-postgres}"

say() { echo "test-services: $*" >&2; }

python_bin() {
  if [[ -x "$REPO/.venv/bin/python" ]]; then echo "$REPO/.venv/bin/python"; else command -v python3; fi
}

noida_bin() {
  if [[ -n "${NOIDA_DB:-}" ]]; then echo "$NOIDA_DB"
  elif command -v noida-db >/dev/null 2>&1; then command -v noida-db
  elif [[ -x "$REPO/.venv/bin/noida-db" ]]; then echo "$REPO/.venv/bin/noida-db"
  else say "noida-db not found: pip install noida-db (the [test] extra)"; return 1
  fi
}

free_port() {  # ask the kernel for an unused port (a tiny race with other starters is acceptable)
  "$(python_bin)" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  local state need_kafka=0 need_es=0 only=() kafka_port="" es_port=""
  state="$(mktemp -d "${TMPDIR:-/tmp}/yuqing-test-services.XXXXXX")"
  [[ -z "${YUQING_KAFKA_BOOTSTRAP:-}" ]] && need_kafka=1
  [[ -z "${YUQING_ES_URL:-}" ]] && need_es=1

  if (( need_kafka || need_es )); then
    local noida
    noida="$(noida_bin)"
    if (( need_kafka )); then kafka_port="$(free_port)"; only+=(kafka); fi
    if (( need_es )); then
      es_port="$(free_port)"
      while [[ "$es_port" == "$kafka_port" ]]; do es_port="$(free_port)"; done
      only+=(elasticsearch)
    fi
    local args=(start --only "$(IFS=,; echo "${only[*]}")" --data-dir "$state/data")
    [[ -n "$kafka_port" ]] && args+=(--kafka-port "$kafka_port")
    [[ -n "$es_port" ]] && args+=(--elasticsearch-port "$es_port")
    # Own session so `stop` can end the wrapper and the server binary together; no inherited stdout,
    # or `$(... start)` would wait for the server to exit.
    setsid "$noida" "${args[@]}" </dev/null >"$state/noida.log" 2>&1 &
    echo $! >"$state/noida.pid"
    local deadline=$((SECONDS + WAIT_S)) up=0
    while (( SECONDS < deadline )); do
      up=1
      [[ -n "$kafka_port" ]] && ! port_open "$kafka_port" && up=0
      [[ -n "$es_port" ]] && ! curl -fsS -m 2 "http://127.0.0.1:$es_port/" >/dev/null 2>&1 && up=0
      (( up )) && break
      if ! kill -0 "$(cat "$state/noida.pid")" 2>/dev/null; then break; fi
      sleep 0.3
    done
    if (( ! up )); then
      say "noida-db did not come up within ${WAIT_S}s; its log:"
      grep -v GLIBC "$state/noida.log" >&2 || true
      YUQING_TEST_SERVICES_STATE="$state" stop >/dev/null
      return 1
    fi
    say "noida-db up (${only[*]}), pid $(cat "$state/noida.pid"), data in $state/data"
  fi

  if [[ -n "$kafka_port" ]]; then echo "export YUQING_KAFKA_BOOTSTRAP=127.0.0.1:$kafka_port"
  else echo "export YUQING_KAFKA_BOOTSTRAP=$(printf %q "$YUQING_KAFKA_BOOTSTRAP")"; fi
  if [[ -n "$es_port" ]]; then echo "export YUQING_ES_URL=http://127.0.0.1:$es_port"
  else echo "export YUQING_ES_URL=$(printf %q "$YUQING_ES_URL")"; fi

  if [[ -z "${YUQING_DATABASE_URL:-}" ]]; then
    local db
    db="yuqing_test_$(date +%Y%m%d%H%M%S)_$RANDOM"
    if psql -X -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 \
         -c "CREATE DATABASE $db" >/dev/null 2>"$state/psql.err"; then
      echo "$db" >"$state/pg.db"
      echo "export YUQING_TEST_DATABASE_URL=postgresql+psycopg://$PG_USER@$PG_HOST:$PG_PORT/$db"
      say "PostgreSQL database $db created"
    else
      say "PostgreSQL at $PG_HOST:$PG_PORT not usable ($(head -c 300 "$state/psql.err")); YUQING_TEST_DATABASE_URL not set"
    fi
  fi
  echo "export YUQING_TEST_SERVICES_STATE=$state"
  echo "# stop with: $HERE/test-services.sh stop $state"
}

stop() {
  local state="${1:-${YUQING_TEST_SERVICES_STATE:-}}"
  if [[ -z "$state" || ! -d "$state" ]]; then
    say "nothing to stop (no state dir: pass it or set YUQING_TEST_SERVICES_STATE)"
    return 0
  fi
  if [[ -f "$state/noida.pid" ]]; then
    local pid
    pid="$(cat "$state/noida.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    say "noida-db (pid $pid) stopped"
  fi
  if [[ -f "$state/pg.db" ]]; then
    local db
    db="$(cat "$state/pg.db")"
    psql -X -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres \
      -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || say "could not drop database $db"
    say "PostgreSQL database $db dropped"
  fi
  rm -rf -- "$state"
}

run() {
  local exports
  exports="$(start)" || return 1
  eval "$exports"
  export YUQING_TEST_SERVICES_STATE
  trap 'stop "$YUQING_TEST_SERVICES_STATE"' EXIT
  "$@"
}

case "${1:-}" in
  start) start ;;
  stop) shift; stop "${1:-}" ;;
  run) shift; [[ $# -gt 0 ]] || { echo "usage: $0 run <command...>" >&2; exit 2; }; run "$@" ;;
  *) echo "usage: $0 start | stop [state-dir] | run <command...>" >&2; exit 2 ;;
esac
