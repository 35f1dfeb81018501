#!/usr/bin/env bash
# Local test stack for Tributary: a private PostgreSQL cluster + a moto S3 mock.
#
#   scripts/local-stack.sh start|stop|status|env|reset
#   eval "$(scripts/local-stack.sh env)"
#
# Why it looks like this:
#  * Private cluster. We never touch a system PostgreSQL service: we initdb our
#    own throw-away cluster under .stack/ (git-ignored; override the location with
#    TRIBUTARY_STACK_DIR), tuned for speed (fsync off etc.) because it only ever
#    holds test data. `reset` deletes it.
#  * root vs postgres. CI and dev containers usually run as root, but initdb and
#    postgres refuse to run as root. When we are root, every server-side command
#    runs as the `postgres` OS user (runuser), the cluster directories are chowned
#    to it, and we make sure that user can reach them (o+x on parent directories,
#    or a fallback location under /var/tmp). As a non-root user we run directly.
#  * Free ports. Both services listen on 127.0.0.1 only, on ports picked from
#    what is free (python3 binding port 0), so we never clash with a system
#    PostgreSQL on 5432 or with parallel CI jobs. Chosen ports are saved in
#    .stack/ports and reused on the next start while they are still free.
#  * Non-interactive. No TTY or stdin is needed; everything is idempotent, so CI
#    can just call `start` and `stop`. Messages go to stderr; only `env` writes
#    to stdout.
#
# Environment overrides: TRIBUTARY_STACK_DIR, PG_BIN (PostgreSQL bin dir),
# MOTO_SERVER (moto_server executable).

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
PROG="local-stack"

PG_USER=postgres
DATABASES=(totesys warehouse olist)
AWS_TEST_REGION=eu-west-2

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

usage() {
    cat >&2 <<EOF
usage: scripts/local-stack.sh <command>

  start    start PostgreSQL (databases: ${DATABASES[*]}) and moto_server; idempotent
  stop     stop both services (data is kept); idempotent
  status   show what is running; exit 0 if both are up, 3 otherwise
  env      print export lines for the running stack:  eval "\$(scripts/local-stack.sh env)"
  reset    stop and delete the whole stack directory (\$TRIBUTARY_STACK_DIR or .stack/)
EOF
}

# ----------------------------------------------------------------------------
# Paths and state

# Absolute path of the stack directory, whether or not it exists yet.
resolve_stack_dir() {
    local dir="${TRIBUTARY_STACK_DIR:-$REPO_ROOT/.stack}"
    case "$dir" in
        /*) ;;
        *) dir="$PWD/$dir" ;;
    esac
    if [[ -d "$dir" ]]; then
        dir="$(cd "$dir" && pwd -P)"
    fi
    printf '%s\n' "${dir%/}"
}

STACK_DIR="$(resolve_stack_dir)"
[[ -n "$STACK_DIR" && "$STACK_DIR" != "/" ]] || die "refusing to use '/' as the stack directory"
MARKER="$STACK_DIR/.tributary-stack"
PORTS_FILE="$STACK_DIR/ports"
PG_LOCATION_FILE="$STACK_DIR/pg.location"
PG_LOG="$STACK_DIR/pg.log"
MOTO_LOG="$STACK_DIR/moto.log"
MOTO_PID_FILE="$STACK_DIR/moto.pid"

# The cluster lives in $STACK_DIR/pg unless start had to move it somewhere the
# postgres user can reach (recorded in pg.location).
pg_dir() {
    if [[ -s "$PG_LOCATION_FILE" ]]; then
        head -n 1 "$PG_LOCATION_FILE"
    else
        printf '%s\n' "$STACK_DIR/pg"
    fi
}

fallback_pg_dir() {
    local sum
    sum="$(printf '%s' "$STACK_DIR" | cksum | cut -d' ' -f1)"
    printf '/var/tmp/tributary-stack-%s/pg\n' "$sum"
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Run a command as the PostgreSQL server user (directly when not root).
# Runs from / so the target user never trips over an unreadable cwd.
as_pg() {
    if is_root; then
        (cd / && runuser -u "$PG_USER" -- "$@")
    else
        (cd / && "$@")
    fi
}

# Read KEY=NUMBER from the ports file; prints nothing if absent.
saved_port() {
    local key="$1" line
    [[ -f "$PORTS_FILE" ]] || return 0
    line="$(grep -E "^${key}=[0-9]+$" "$PORTS_FILE" | tail -n 1 || true)"
    printf '%s' "${line#*=}"
}

save_ports() {
    local pg_port="$1" moto_port="$2" tmp="$PORTS_FILE.tmp.$$"
    printf 'PG_PORT=%s\nMOTO_PORT=%s\n' "$pg_port" "$moto_port" >"$tmp"
    mv -f "$tmp" "$PORTS_FILE"
}

find_python() {
    local py
    for py in python3 python; do
        if command -v "$py" >/dev/null 2>&1; then
            printf '%s\n' "$py"
            return 0
        fi
    done
    return 1
}

port_is_free() {
    local py
    py="$(find_python)" || die "python3 is required to pick free ports (apt-get install -y python3)"
    "$py" -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.close()
' "$1" >/dev/null 2>&1
}

random_free_port() {
    local py
    py="$(find_python)" || die "python3 is required to pick free ports (apt-get install -y python3)"
    "$py" -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
'
}

# pick_port SAVED AVOID: reuse SAVED if still free, else a fresh free port != AVOID.
pick_port() {
    local saved="$1" avoid="$2" port _
    if [[ "$saved" =~ ^[0-9]+$ && "$saved" != "$avoid" ]] && port_is_free "$saved"; then
        printf '%s\n' "$saved"
        return 0
    fi
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        port="$(random_free_port)"
        if [[ "$port" =~ ^[0-9]+$ && "$port" != "$avoid" ]]; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    die "could not find a free TCP port on 127.0.0.1"
}

# ----------------------------------------------------------------------------
# PostgreSQL

pg_bin_ok() {
    local dir="$1" tool
    [[ -n "$dir" && -d "$dir" ]] || return 1
    for tool in initdb pg_ctl postgres psql pg_isready; do
        [[ -x "$dir/$tool" ]] || return 1
    done
}

# Locate the PostgreSQL bin dir: $PG_BIN, the version matching an existing
# cluster, pg_config --bindir, newest /usr/lib/postgresql/*/bin, pg_ctl on PATH.
find_pg_bin() {
    local cand data_ver dir
    if [[ -n "${PG_BIN:-}" ]]; then
        pg_bin_ok "$PG_BIN" || return 1
        printf '%s\n' "$PG_BIN"
        return 0
    fi
    if [[ -f "$(pg_dir)/data/PG_VERSION" ]]; then
        data_ver="$(head -n 1 "$(pg_dir)/data/PG_VERSION")"
        if pg_bin_ok "/usr/lib/postgresql/$data_ver/bin"; then
            printf '%s\n' "/usr/lib/postgresql/$data_ver/bin"
            return 0
        fi
    fi
    if command -v pg_config >/dev/null 2>&1; then
        cand="$(pg_config --bindir 2>/dev/null || true)"
        if pg_bin_ok "$cand"; then
            printf '%s\n' "$cand"
            return 0
        fi
    fi
    cand=""
    for dir in /usr/lib/postgresql/*/bin; do
        pg_bin_ok "$dir" && cand="$(printf '%s\n%s\n' "$cand" "$dir" | sed '/^$/d' | sort -V | tail -n 1)"
    done
    if [[ -n "$cand" ]]; then
        printf '%s\n' "$cand"
        return 0
    fi
    if command -v pg_ctl >/dev/null 2>&1; then
        cand="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
        if pg_bin_ok "$cand"; then
            printf '%s\n' "$cand"
            return 0
        fi
    fi
    return 1
}

require_pg_bin() {
    if ! PGB="$(find_pg_bin)"; then
        if [[ -n "${PG_BIN:-}" ]]; then
            die "PG_BIN=$PG_BIN does not contain initdb, pg_ctl, postgres, psql and pg_isready"
        fi
        die "PostgreSQL server binaries not found (need initdb, pg_ctl, postgres, psql, pg_isready).
  Install them with:  apt-get update && apt-get install -y postgresql
  or point PG_BIN at the directory that holds them."
    fi
}

# PID of the running postmaster of our cluster, if any.
pg_pid() {
    local pidfile pid
    pidfile="$(pg_dir)/data/postmaster.pid"
    [[ -f "$pidfile" ]] || return 1
    pid="$(head -n 1 "$pidfile" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/comm" ]]; then
        grep -q postgres "/proc/$pid/comm" || return 1
    fi
    printf '%s\n' "$pid"
}

# Port the running postmaster listens on (line 4 of postmaster.pid).
pg_running_port() {
    local port
    port="$(sed -n 4p "$(pg_dir)/data/postmaster.pid" 2>/dev/null || true)"
    [[ "$port" =~ ^[0-9]+$ ]] || return 1
    printf '%s\n' "$port"
}

pg_isready_cmd() {
    local bin
    if [[ -z "${PGB:-}" ]]; then
        PGB="$(find_pg_bin || true)"
    fi
    if [[ -n "$PGB" ]]; then
        bin="$PGB/pg_isready"
    elif ! bin="$(command -v pg_isready)"; then
        return 1
    fi
    "$bin" -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -t 3 </dev/null >/dev/null 2>&1
}

pg_ready() {
    local port
    pg_pid >/dev/null || return 1
    port="$(pg_running_port)" || return 1
    pg_isready_cmd "$port"
}

wait_pg_ready() {
    local port="$1" i
    for ((i = 0; i < 60; i++)); do
        pg_isready_cmd "$port" && return 0
        sleep 0.5
    done
    return 1
}

# Ask user postgres whether it can write DIR.
pg_can_write() {
    as_pg test -w "$1" -a -x "$1" 2>/dev/null
}

# Make sure PG_DIR exists, is owned by the server user and reachable by it.
prepare_pg_dir() {
    local dir="$1" p
    mkdir -p "$dir" || return 1
    if is_root; then
        chown "$PG_USER:" "$dir" || return 1
        chmod 700 "$dir" || return 1
        if ! pg_can_write "$dir"; then
            # Give "others" search permission on every ancestor that lacks it.
            p="$dir"
            while p="$(dirname "$p")"; [[ "$p" != "/" ]]; do
                if ! as_pg test -x "$p" 2>/dev/null; then
                    log "granting o+x on $p so user $PG_USER can reach the cluster"
                    chmod o+x "$p" || true
                fi
            done
        fi
        pg_can_write "$dir"
    fi
}

# Decide (once) where the cluster lives; result written to pg.location if it
# is not the default.
setup_pg_location() {
    local default="$STACK_DIR/pg" fb sock_len
    if [[ -s "$PG_LOCATION_FILE" ]]; then
        prepare_pg_dir "$(pg_dir)" || die "user $PG_USER cannot access $(pg_dir); run '$0 reset'"
        return 0
    fi
    # Unix socket paths are limited to ~107 bytes: "<dir>/run/.s.PGSQL.65535".
    sock_len=$((${#default} + 20))
    if ((sock_len < 100)) && prepare_pg_dir "$default"; then
        return 0
    fi
    fb="$(fallback_pg_dir)"
    log "using $fb for the cluster (user $PG_USER cannot reach $default or the path is too long)"
    prepare_pg_dir "$fb" || die "user $PG_USER cannot access $fb either"
    printf '%s\n' "$fb" >"$PG_LOCATION_FILE"
    rm -rf "$default"
}

pg_major_of_bin() {
    local v
    v="$("$PGB/pg_ctl" --version | awk '{print $3}')"
    v="${v%%.*}"
    printf '%s\n' "${v%%[^0-9]*}"
}

init_cluster() {
    local dir data bin_major data_major locale_args
    dir="$(pg_dir)"
    data="$dir/data"
    bin_major="$(pg_major_of_bin)"
    if [[ -f "$data/PG_VERSION" ]]; then
        data_major="$(head -n 1 "$data/PG_VERSION")"
        if [[ "$data_major" != "$bin_major" ]]; then
            die "cluster in $data was created by PostgreSQL $data_major but $PGB is PostgreSQL $bin_major;
  set PG_BIN to the matching bin dir, or run '$0 reset' to start over"
        fi
        return 0
    fi
    if [[ -e "$data" ]]; then
        log "removing incomplete cluster directory $data"
        rm -rf "$data"
    fi
    locale_args=(--locale=C)
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
        locale_args+=(--lc-ctype=C.UTF-8)
    fi
    log "initialising PostgreSQL $bin_major cluster in $data"
    if ! as_pg "$PGB/initdb" -D "$data" -A trust -U postgres --encoding=UTF8 "${locale_args[@]}" --no-sync \
        </dev/null >>"$PG_LOG" 2>&1; then
        tail -n 20 "$PG_LOG" >&2 || true
        die "initdb failed (full log: $PG_LOG)"
    fi
    printf "\n# Tributary local stack settings (rewritten on every start)\ninclude 'tributary.conf'\n" \
        >>"$data/postgresql.conf"
}

conf_quote() { printf "'%s'" "${1//\'/\'\'}"; }

write_pg_conf() {
    local port="$1" dir data sock
    dir="$(pg_dir)"
    data="$dir/data"
    sock="$dir/run"
    mkdir -p "$sock"
    chmod 755 "$sock"
    is_root && chown "$PG_USER:" "$sock"
    cat >"$data/tributary.conf" <<EOF
# Written by scripts/local-stack.sh -- test stack only, durability is off.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = $(conf_quote "$sock")
max_connections = 200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    # TLS on loopback too, so the client's TLS path is tested against a real
    # server: a self-signed certificate made once per cluster.
    if ensure_tls_cert "$dir"; then
        cat >>"$data/tributary.conf" <<EOF
ssl = on
ssl_cert_file = $(conf_quote "$dir/tls/server.crt")
ssl_key_file = $(conf_quote "$dir/tls/server.key")
EOF
    fi
    is_root && chown "$PG_USER:" "$data/tributary.conf"
    return 0
}

# Creates a private CA ($1/tls/ca.crt) and a server certificate it signs
# for localhost/127.0.0.1 ($1/tls/server.{crt,key}), once. Without openssl
# the stack runs without TLS and says so.
ensure_tls_cert() {
    local dir="$1/tls"
    if [[ -s "$dir/server.crt" && -s "$dir/server.key" && -s "$dir/ca.crt" ]]; then
        return 0
    fi
    if ! command -v openssl >/dev/null 2>&1; then
        log "openssl not found: PostgreSQL runs without TLS (apt-get install openssl to test TLS)"
        return 1
    fi
    mkdir -p "$dir"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
    if ! { openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Tributary local stack CA" \
               -keyout "$dir/ca.key" -out "$dir/ca.crt" &&
           openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
               -keyout "$dir/server.key" -out "$dir/server.csr" &&
           openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
               -CAcreateserial -days 3650 -extfile "$dir/server.ext" -out "$dir/server.crt"; } >/dev/null 2>&1; then
        log "could not make TLS certificates: PostgreSQL runs without TLS"
        rm -f "$dir"/*
        return 1
    fi
    chmod 600 "$dir/server.key"
    chmod 644 "$dir/server.crt"
    chmod 755 "$dir"
    is_root && chown -R "$PG_USER:" "$dir"
    return 0
}

start_pg() {
    local pid port i
    if pid="$(pg_pid)"; then
        port="$(pg_running_port || true)"
        for ((i = 0; i < 20; i++)); do
            if [[ -n "$port" ]] && pg_isready_cmd "$port"; then
                log "postgres already running (pid $pid) on 127.0.0.1:$port"
                PG_PORT="$port"
                return 0
            fi
            sleep 0.5
            port="$(pg_running_port || true)"
        done
        log "postgres (pid $pid) is not answering; restarting it"
        stop_pg
    fi

    setup_pg_location
    init_cluster
    PG_PORT="$(pick_port "$(saved_port PG_PORT)" "$(saved_port MOTO_PORT)")"
    write_pg_conf "$PG_PORT"
    log "starting postgres on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
    # pg_ctl has no -l: the postmaster inherits our root-opened log file, so
    # user postgres never needs to write inside the stack dir itself.
    # fd 9 (the stack lock) must not leak into the daemon.
    if ! as_pg "$PGB/pg_ctl" start -w -t 60 -D "$(pg_dir)/data" </dev/null >>"$PG_LOG" 2>&1 9>&-; then
        tail -n 20 "$PG_LOG" >&2 || true
        die "postgres failed to start (full log: $PG_LOG)"
    fi
    wait_pg_ready "$PG_PORT" || {
        tail -n 20 "$PG_LOG" >&2 || true
        die "postgres started but does not accept connections on 127.0.0.1:$PG_PORT"
    }
}

ensure_databases() {
    local db exists
    for db in "${DATABASES[@]}"; do
        exists="$("$PGB/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tA \
            -c "SELECT 1 FROM pg_database WHERE datname = '$db'" </dev/null)" ||
            die "cannot query postgres on 127.0.0.1:$PG_PORT"
        if [[ "$exists" != "1" ]]; then
            log "creating database $db"
            "$PGB/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
                -c "CREATE DATABASE \"$db\"" </dev/null >/dev/null ||
                die "could not create database $db"
        fi
    done
    ensure_password_role
}

# The cluster trusts loopback, so passwords are never checked. Members of
# role tributary_password_login are the exception (scram-sha-256), so tests
# can see a wrong or rotated password refused (SQLSTATE 28P01).
ensure_password_role() {
    local psql=("$PGB/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1)
    local line="host all +tributary_password_login 127.0.0.1/32 scram-sha-256" hba
    "${psql[@]}" -c "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tributary_password_login') THEN
          CREATE ROLE tributary_password_login NOLOGIN;
        END IF; END \$\$" </dev/null >/dev/null || die "could not create role tributary_password_login"
    hba="$("${psql[@]}" -tA -c "SHOW hba_file" </dev/null)" || die "cannot read hba_file from postgres"
    if ! grep -qxF "$line" "$hba"; then
        log "requiring passwords for members of tributary_password_login ($hba)"
        as_pg sh -c 'f="$1"; l="$2"; { printf "%s\n" "$l"; cat "$f"; } >"$f.new" && mv "$f.new" "$f"' _ "$hba" "$line" ||
            die "could not update $hba"
        "${psql[@]}" -c "SELECT pg_reload_conf()" </dev/null >/dev/null || die "could not reload postgres"
    fi
}

stop_pg() {
    local pid i bin=""
    if ! pid="$(pg_pid)"; then
        log "postgres is not running"
        return 0
    fi
    log "stopping postgres (pid $pid)"
    if [[ -n "${PGB:-}" ]]; then
        bin="$PGB"
    elif bin="$(find_pg_bin)"; then
        :
    else
        bin=""
    fi
    if [[ -n "$bin" ]]; then
        as_pg "$bin/pg_ctl" stop -D "$(pg_dir)/data" -m fast -w -t 60 </dev/null >>"$PG_LOG" 2>&1 ||
            as_pg "$bin/pg_ctl" stop -D "$(pg_dir)/data" -m immediate -w -t 30 </dev/null >>"$PG_LOG" 2>&1 ||
            true
    else
        kill -INT "$pid" 2>/dev/null || true
    fi
    for ((i = 0; i < 120; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        ((i == 60)) && kill -QUIT "$pid" 2>/dev/null
        sleep 0.5
    done
    kill -KILL "$pid" 2>/dev/null || true
    log "warning: had to SIGKILL postgres (pid $pid)"
}

# ----------------------------------------------------------------------------
# moto_server

MOTO_CMD=()

moto_cmd_works() { "$@" --help </dev/null >/dev/null 2>&1; }

# Fill MOTO_CMD with a working moto server command, installing it if needed.
require_moto() {
    local py=""
    py="$(find_python || true)"
    if [[ -n "${MOTO_SERVER:-}" ]]; then
        moto_cmd_works "$MOTO_SERVER" || die "MOTO_SERVER=$MOTO_SERVER does not run"
        MOTO_CMD=("$MOTO_SERVER")
        return 0
    fi
    if command -v moto_server >/dev/null 2>&1 && moto_cmd_works moto_server; then
        MOTO_CMD=(moto_server)
        return 0
    fi
    if [[ -n "$py" ]] && moto_cmd_works "$py" -m moto.server; then
        MOTO_CMD=("$py" -m moto.server)
        return 0
    fi
    [[ -n "$py" ]] || die "python3 is required for moto_server. Install with:
  apt-get update && apt-get install -y python3 python3-pip && python3 -m pip install 'moto[server]'"
    log "moto_server not found; trying: $py -m pip install 'moto[server]'"
    if "$py" -m pip install --quiet 'moto[server]' </dev/null >&2; then
        if command -v pyenv >/dev/null 2>&1; then
            pyenv rehash >/dev/null 2>&1 || true
        fi
        hash -r
        if command -v moto_server >/dev/null 2>&1 && moto_cmd_works moto_server; then
            MOTO_CMD=(moto_server)
            return 0
        fi
        if moto_cmd_works "$py" -m moto.server; then
            MOTO_CMD=("$py" -m moto.server)
            return 0
        fi
    fi
    die "could not install moto's server. Install it yourself, e.g.:
  $py -m pip install 'moto[server]'
  (on an externally-managed Python add --break-system-packages, or use a virtualenv / pipx)
  or set MOTO_SERVER to the moto_server executable"
}

moto_pid() {
    local pid
    [[ -f "$MOTO_PID_FILE" ]] || return 1
    pid="$(head -n 1 "$MOTO_PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *moto* ]] || return 1
    fi
    printf '%s\n' "$pid"
}

http_alive() {
    local url="http://127.0.0.1:$1/moto-api/" code py
    if command -v curl >/dev/null 2>&1; then
        code="$(curl -s --noproxy '*' --max-time 3 -o /dev/null -w '%{http_code}' "$url" </dev/null || true)"
        [[ -n "$code" && "$code" != "000" ]]
        return
    fi
    py="$(find_python)" || return 1
    "$py" -c '
import sys, urllib.request, urllib.error
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    opener.open(sys.argv[1], timeout=3)
except urllib.error.HTTPError:
    pass
' "$url" >/dev/null 2>&1
}

moto_ready() {
    local port
    moto_pid >/dev/null || return 1
    port="$(saved_port MOTO_PORT)"
    [[ -n "$port" ]] && http_alive "$port"
}

start_moto() {
    local pid port i
    if pid="$(moto_pid)"; then
        port="$(saved_port MOTO_PORT)"
        for ((i = 0; i < 20; i++)); do
            if [[ -n "$port" ]] && http_alive "$port"; then
                log "moto_server already running (pid $pid) on 127.0.0.1:$port"
                MOTO_PORT="$port"
                return 0
            fi
            sleep 0.5
        done
        log "moto_server (pid $pid) is not answering; restarting it"
        stop_moto
    fi
    rm -f "$MOTO_PID_FILE"
    MOTO_PORT="$(pick_port "$(saved_port MOTO_PORT)" "$PG_PORT")"
    save_ports "$PG_PORT" "$MOTO_PORT"
    log "starting moto_server on 127.0.0.1:$MOTO_PORT (log: $MOTO_LOG)"
    # New session so it survives the caller's process group; the child records
    # its own pid and then execs the server, so the pid file is exact.
    local launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    # shellcheck disable=SC2016 # $$ and $@ are for the inner sh
    "${launcher[@]}" sh -c 'echo "$$" >"$1"; shift; exec nohup "$@"' sh "$MOTO_PID_FILE" \
        "${MOTO_CMD[@]}" -H 127.0.0.1 -p "$MOTO_PORT" </dev/null >>"$MOTO_LOG" 2>&1 9>&- &
    for ((i = 0; i < 120; i++)); do
        if [[ -s "$MOTO_PID_FILE" ]] && ! moto_pid >/dev/null; then
            tail -n 20 "$MOTO_LOG" >&2 || true
            die "moto_server exited during startup (full log: $MOTO_LOG)"
        fi
        http_alive "$MOTO_PORT" && return 0
        sleep 0.25
    done
    tail -n 20 "$MOTO_LOG" >&2 || true
    stop_moto
    die "moto_server did not answer on 127.0.0.1:$MOTO_PORT within 30s (full log: $MOTO_LOG)"
}

stop_moto() {
    local pid i
    if ! pid="$(moto_pid)"; then
        log "moto_server is not running"
        rm -f "$MOTO_PID_FILE"
        return 0
    fi
    log "stopping moto_server (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 40; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$MOTO_PID_FILE"
}

# ----------------------------------------------------------------------------
# Commands

ensure_stack_dir() {
    if [[ -d "$STACK_DIR" && ! -f "$MARKER" && -n "$(ls -A "$STACK_DIR" 2>/dev/null)" ]]; then
        die "$STACK_DIR exists and is not a Tributary stack directory; set TRIBUTARY_STACK_DIR elsewhere"
    fi
    mkdir -p "$STACK_DIR"
    STACK_DIR="$(cd "$STACK_DIR" && pwd -P)"
    : >>"$MARKER"
    # Other users (postgres) may need to traverse it; nothing secret lives here.
    chmod 755 "$STACK_DIR"
}

take_lock() {
    command -v flock >/dev/null 2>&1 || return 0
    exec 9>"$STACK_DIR/.lock"
    flock -w 180 9 || die "another local-stack.sh is still running (lock $STACK_DIR/.lock)"
}

check_server_user() {
    if is_root; then
        id -u "$PG_USER" >/dev/null 2>&1 ||
            die "running as root but OS user '$PG_USER' does not exist (it comes with the postgresql package,
  or create it: useradd --system --home-dir /var/lib/postgresql --shell /bin/bash $PG_USER)"
        command -v runuser >/dev/null 2>&1 ||
            die "running as root needs runuser (apt-get install -y util-linux)"
    fi
}

cmd_start() {
    PGB=""
    PG_PORT=""
    MOTO_PORT=""
    # Check every prerequisite before starting anything.
    require_pg_bin
    check_server_user
    ensure_stack_dir
    take_lock
    if ! moto_ready; then
        require_moto
    fi
    start_pg
    ensure_databases
    save_ports "$PG_PORT" "$(saved_port MOTO_PORT)"
    start_moto
    save_ports "$PG_PORT" "$MOTO_PORT"
    log "stack is up: postgres 127.0.0.1:$PG_PORT (databases: ${DATABASES[*]}), moto 127.0.0.1:$MOTO_PORT"
    log "use it with:  eval \"\$($0 env)\""
}

cmd_stop() {
    PGB=""
    if [[ ! -d "$STACK_DIR" ]]; then
        log "nothing to stop ($STACK_DIR does not exist)"
        return 0
    fi
    take_lock
    stop_moto
    stop_pg
    log "stopped (data kept in $(pg_dir)/data)"
}

cmd_status() {
    PGB=""
    local ok=0 pid port
    if pid="$(pg_pid)"; then
        port="$(pg_running_port || echo '?')"
        if [[ "$port" != "?" ]] && pg_isready_cmd "$port"; then
            log "postgres:    running (pid $pid) on 127.0.0.1:$port, data $(pg_dir)/data"
        else
            log "postgres:    process $pid exists but is not accepting connections (port $port)"
            ok=1
        fi
    else
        log "postgres:    stopped"
        ok=1
    fi
    if pid="$(moto_pid)"; then
        port="$(saved_port MOTO_PORT)"
        if [[ -n "$port" ]] && http_alive "$port"; then
            log "moto_server: running (pid $pid) on 127.0.0.1:$port"
        else
            log "moto_server: process $pid exists but is not answering HTTP (port ${port:-?})"
            ok=1
        fi
    else
        log "moto_server: stopped"
        ok=1
    fi
    return $((ok == 0 ? 0 : 3))
}

cmd_env() {
    PGB=""
    local pg_port moto_port
    if ! pg_ready || ! moto_ready; then
        printf '%s: error: the local stack is not running; start it with: %s start\n' "$PROG" "$0" >&2
        exit 1
    fi
    pg_port="$(pg_running_port)"
    moto_port="$(saved_port MOTO_PORT)"
    cat <<EOF
export TOTESYS_DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/totesys
export WAREHOUSE_DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/warehouse
export OLIST_DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/olist
export TRIBUTARY_PG_ADMIN_URL=postgres://postgres@127.0.0.1:$pg_port/postgres
export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port
export AWS_ALLOW_HTTP=true
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=$AWS_TEST_REGION AWS_DEFAULT_REGION=$AWS_TEST_REGION
EOF
    # The stack's self-signed certificate, for the TLS tests only.
    if [[ -s "$(pg_dir)/tls/ca.crt" ]]; then
        printf 'export TRIBUTARY_TEST_PG_CA=%s\n' "$(pg_dir)/tls/ca.crt"
    fi
}

cmd_reset() {
    local pgd
    if [[ ! -d "$STACK_DIR" ]]; then
        log "nothing to reset ($STACK_DIR does not exist)"
        return 0
    fi
    if [[ ! -f "$MARKER" && -n "$(ls -A "$STACK_DIR" 2>/dev/null)" ]]; then
        die "$STACK_DIR does not look like a Tributary stack directory; not deleting it"
    fi
    case "$STACK_DIR" in
        "$REPO_ROOT" | "${HOME:-/nonexistent}" | /) die "refusing to delete $STACK_DIR" ;;
    esac
    cmd_stop
    pgd="$(pg_dir)"
    if [[ -s "$PG_LOCATION_FILE" && "$pgd" == /var/tmp/tributary-stack-*/pg ]]; then
        rm -rf "$(dirname "$pgd")"
    fi
    rm -rf "$STACK_DIR"
    log "removed $STACK_DIR"
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        env) cmd_env ;;
        reset) cmd_reset ;;
        -h | --help | help)
            usage
            exit 0
            ;;
        *)
            usage
            exit 2
            ;;
    esac
}

main "$@"
