#!/usr/bin/env bash
# dbt, for the models in dbt/, against the warehouse in WAREHOUSE_DATABASE_URL.
#
#   scripts/dbt.sh build            every model, then its tests
#   scripts/dbt.sh --install        only install dbt (make test-deps does)
#
# The first call installs the versions pinned in dbt/requirements.txt into
# a virtualenv under ~/.cache/tributary/dbt-venv (about a minute), again
# whenever that file changes. DBT_PROJECT_DIR runs another copy of the
# project (the tests use one per test). Tracking and version checks are off:
# dbt talks to the warehouse only.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="${TRIBUTARY_TOOLS:-$HOME/.cache/tributary}"
venv="$tools/dbt-venv"
req="$root/dbt/requirements.txt"
die() { printf 'dbt.sh: %s\n' "$*" >&2; exit 1; }

. "$root/scripts/venv.sh"
ensure_venv dbt.sh "$venv" "$req" 'import dbt.adapters.postgres' "dbt-postgres"
if [[ "${1:-}" == "--install" ]]; then
    exit 0
fi

: "${WAREHOUSE_DATABASE_URL:?set WAREHOUSE_DATABASE_URL to the warehouse (eval \"\$(scripts/local-stack.sh env)\" locally)}"
# postgres://user:password@host:port/dbname?sslmode=... into the profile's parts.
eval "$(python3 - "$WAREHOUSE_DATABASE_URL" <<'PY'
import shlex, sys
from urllib.parse import urlsplit, parse_qs, unquote
u = urlsplit(sys.argv[1])
if u.scheme not in ("postgres", "postgresql"):
    sys.exit("dbt.sh: WAREHOUSE_DATABASE_URL is not a postgres:// URL")
query = parse_qs(u.query)
parts = {
    "TRIBUTARY_DBT_HOST": u.hostname or "127.0.0.1",
    "TRIBUTARY_DBT_PORT": str(u.port or 5432),
    "TRIBUTARY_DBT_USER": unquote(u.username or "postgres"),
    "TRIBUTARY_DBT_PASSWORD": unquote(u.password or ""),
    "TRIBUTARY_DBT_DBNAME": unquote(u.path.lstrip("/") or "postgres"),
    "TRIBUTARY_DBT_SSLMODE": query.get("sslmode", ["prefer"])[0],
}
for name, value in parts.items():
    print(f"export {name}={shlex.quote(value)}")
PY
)"
export DBT_SEND_ANONYMOUS_USAGE_STATS=false DBT_VERSION_CHECK=false DO_NOT_TRACK=1
project="${DBT_PROJECT_DIR:-$root/dbt}"
exec "$venv/bin/dbt" "$@" --project-dir "$project" --profiles-dir "$root/dbt"
