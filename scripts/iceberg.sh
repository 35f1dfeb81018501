#!/usr/bin/env bash
# Independent readers of the processed lake's Iceberg tables: PyIceberg plans
# a table's current snapshot, DuckDB queries the files it names.
#
#   scripts/iceberg.sh rows TABLE_DIR [--columns a,b] [--reader duckdb]
#   scripts/iceberg.sh describe TABLE_DIR
#   scripts/iceberg.sh query WAREHOUSE_DIR "select count(*) from fact_sales_order"
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
die() { printf 'iceberg.sh: %s\n' "$*" >&2; exit 1; }

if ! "$venv/bin/python" -c 'import pyiceberg, duckdb' >/dev/null 2>&1 || ! cmp -s "$req" "$venv/tributary-requirements.txt"; then
    command -v python3 >/dev/null || die "cannot install the readers: python3 is missing (install Python 3.9 or later)"
    echo "iceberg.sh: installing PyIceberg and DuckDB into $venv (pip install -r iceberg/requirements.txt)" >&2
    mkdir -p "$tools"
    python3 -m venv "$venv" >/dev/null ||
        die "cannot install the readers: no virtualenv in $venv (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" ||
        die "cannot install the readers: run '$venv/bin/pip install -r $req' and read its error"
    cp "$req" "$venv/tributary-requirements.txt"
fi
if [[ "${1:-}" == "--install" ]]; then
    exit 0
fi
exec "$venv/bin/python" "$root/iceberg/read.py" "$@"
