# Helpers the benchmark scripts share: source it, after setting PROG.
#
#   PROG=bench-x; . "$(dirname "$0")/bench-lib.sh"
#
# Benchmarks print figures and exit 0 when a goal is missed; they fail only
# when something actually fails.

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}
# Seconds since the epoch with nanoseconds, and the difference of two.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# Best (minimum), median and largest of the numbers given as arguments.
best() { printf '%s\n' "$@" | sort -g | head -n 1; }
median() {
    local n=$#
    printf '%s\n' "$@" | sort -g | sed -n "$(((n + 1) / 2))p"
}
maximum() { printf '%s\n' "$@" | sort -g | tail -n 1; }
# a / b with the given number of decimals.
divide() { awk -v a="$1" -v b="$2" -v d="$3" 'BEGIN { printf "%.*f", d, a / b }'; }
# PASS when a <= b, or a < b.
verdict_le() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "PASS" : "MISS" }'; }
verdict_lt() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? "PASS" : "MISS" }'; }
# psql that fails on the first error, ignores ~/.psqlrc and prints bare values.
q() {
    local url="$1"
    shift
    PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -tA -d "$url" "$@"
}

# Starts the local stack when it is down and exports its variables.
bench_stack() {
    command -v psql >/dev/null || die "psql not found (apt-get install -y postgresql-client)"
    if ! scripts/local-stack.sh status >/dev/null 2>&1; then
        log "starting the local stack"
        scripts/local-stack.sh start
    fi
    eval "$(scripts/local-stack.sh env)"
    [[ -n "${TRIBUTARY_PG_ADMIN_URL:-}" ]] || die "local-stack env did not set TRIBUTARY_PG_ADMIN_URL"
    ADMIN_URL="$TRIBUTARY_PG_ADMIN_URL"
}

# The URL of database $1 on the local stack.
bench_db_url() { printf '%s/%s' "${ADMIN_URL%/*}" "$1"; }

# Drops and creates database $1 (a benchmark's own, never the stack's).
bench_recreate_db() {
    case "$1" in
        totesys | warehouse | olist | postgres | template0 | template1)
            die "refusing to recreate the database '$1'"
            ;;
    esac
    q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS \"$1\"" -c "CREATE DATABASE \"$1\""
}

# Builds the CLI in release mode; sets BIN.
bench_release_bin() {
    command -v cargo >/dev/null || die "cargo not found"
    log "building: cargo build --release -p tributary"
    cargo build --release -p tributary
    local target_dir="${CARGO_TARGET_DIR:-target}"
    case "$target_dir" in
        /*) ;;
        *) target_dir="$PWD/$target_dir" ;;
    esac
    BIN="$target_dir/release/tributary"
    [[ -x "$BIN" ]] || die "built binary not found at $BIN"
}

# Runs a command under GNU time; prints "<wall seconds> <peak RSS kB>".
# Its output goes to $TIMED_LOG (default /dev/null).
timed() {
    local t0 t1 stats
    stats="$(mktemp)"
    t0="$(now)"
    /usr/bin/time -v -o "$stats" "$@" >>"${TIMED_LOG:-/dev/null}" 2>&1 ||
        { cat "$stats" >&2; rm -f "$stats"; die "failed: $*"; }
    t1="$(now)"
    printf '%s %s\n' "$(elapsed "$t0" "$t1")" \
        "$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$stats")"
    rm -f "$stats"
}
