#!/usr/bin/env bash
# Tributary's dashboards (Streamlit, dashboards/) over the warehouse.
#
#   scripts/dashboard.sh                   serve on http://127.0.0.1:8501 (make dashboard)
#   scripts/dashboard.sh check [--screenshots DIR]
#                                          render every page in headless Chromium and
#                                          print what each drew and its load time (JSON)
#   scripts/dashboard.sh --install         only install the Python packages
#
# TRIBUTARY_DASHBOARD_PAGES limits `check` to some pages (name=path, comma-separated;
# the first page, sales, is served at /).
#
# The first call installs the versions pinned in dashboards/requirements.txt
# into a virtualenv under ~/.cache/tributary/dashboard-venv (about 40 s),
# again whenever that file changes. WAREHOUSE_DATABASE_URL names the
# warehouse; unset, the local stack's is used. `check` needs Chromium
# (Debian: apt-get install chromium) and exits 2 saying so when it is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="${TRIBUTARY_TOOLS:-$HOME/.cache/tributary}"
venv="$tools/dashboard-venv"
req="$root/dashboards/requirements.txt"
pages="${TRIBUTARY_DASHBOARD_PAGES:-sales=/,payments=/payments,crypto=/crypto}"
die() { printf 'dashboard.sh: %s\n' "$*" >&2; exit 1; }

. "$root/scripts/venv.sh"
ensure_venv dashboard.sh "$venv" "$req" 'import streamlit, psycopg, websockets' "Streamlit and the dashboard's packages"
mode="${1:-serve}"
if [[ "$mode" == "--install" ]]; then
    exit 0
fi
if [[ -z "${WAREHOUSE_DATABASE_URL:-}" ]]; then
    eval "$("$root/scripts/local-stack.sh" env)"
fi
export WAREHOUSE_DATABASE_URL

streamlit() {
    local port=$1
    cd "$root/dashboards"
    exec "$venv/bin/streamlit" run app.py \
        --server.headless true --server.address 127.0.0.1 --server.port "$port" \
        --browser.gatherUsageStats false --server.fileWatcherType none \
        --client.toolbarMode minimal --theme.base light
}

case "$mode" in
serve)
    port="${TRIBUTARY_DASHBOARD_PORT:-8501}"
    echo "dashboard.sh: http://127.0.0.1:$port (Ctrl-C stops it)" >&2
    (streamlit "$port")
    ;;
check)
    shift
    port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    log=$(mktemp)
    (streamlit "$port") >"$log" 2>&1 &
    server=$!
    trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -f "$log"' EXIT
    for _ in $(seq 300); do
        if "$venv/bin/python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/_stcore/health', timeout=1)" 2>/dev/null; then
            break
        fi
        kill -0 $server 2>/dev/null || { cat "$log" >&2; die "streamlit exited before serving"; }
        sleep 0.1
    done
    "$venv/bin/python" "$root/dashboards/render.py" --url "http://127.0.0.1:$port" --pages "$pages" "$@"
    ;;
*)
    die "unknown command '$mode' (serve, check, --install)"
    ;;
esac
