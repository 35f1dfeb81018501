#!/usr/bin/env bash
# Independent readers of the processed lake's Iceberg tables: PyIceberg plans
# a table's current snapshot, DuckDB queries the files it names.
#
#   scripts/iceberg.sh rows TABLE_DIR [--columns a,b] [--reader duckdb]
#   scripts/iceberg.sh describe TABLE_DIR
#   scripts/iceberg.sh query WAREHOUSE_DIR "select count(*) from fact_sales_order" [--json]
#   scripts/iceberg.sh glue DATABASE '{"table": ["column", ...]}'
#   scripts/iceberg.sh raw DATABASE   the raw zone's tables as Glue declares them
#   scripts/iceberg.sh --install        only install the readers
#
# The first call installs the versions pinned in iceberg/requirements.txt
# into a virtualenv under ~/.cache/tributary/iceberg-venv, and again
# whenever that file changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="${TRIBUTARY_TOOLS:-$HOME/.cache/tributary}"
venv="$tools/iceberg-venv"
req="$root/iceberg/requirements.txt"

. "$root/scripts/venv.sh"
ensure_venv iceberg.sh "$venv" "$req" 'import pyiceberg, duckdb' "PyIceberg and DuckDB"
if [[ "${1:-}" == "--install" ]]; then
    exit 0
fi
exec "$venv/bin/python" "$root/iceberg/read.py" "$@"
