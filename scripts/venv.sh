# Sourced by the scripts that run Python tools (dbt, the dashboards, the
# Iceberg readers) from a virtualenv pinned by a requirements file:
#
#   ensure_venv WHO VENV REQUIREMENTS PYTHON_CHECK WHAT
#
# installs REQUIREMENTS into VENV when PYTHON_CHECK fails there or the file
# changed since the last install, and exits with a message that starts
# "WHO: cannot install WHAT" when it cannot.
ensure_venv() {
    local who="$1" venv="$2" req="$3" check="$4" what="$5"
    if "$venv/bin/python" -c "$check" >/dev/null 2>&1 && cmp -s "$req" "$venv/tributary-requirements.txt"; then
        return 0
    fi
    local fail="$who: cannot install $what"
    command -v python3 >/dev/null || { printf '%s: python3 is missing (install Python 3.9 or later)\n' "$fail" >&2; exit 1; }
    printf '%s: installing %s into %s (pip install -r %s)\n' "$who" "$what" "$venv" "$req" >&2
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" >/dev/null ||
        { printf '%s: no virtualenv in %s (Debian: apt-get install python3-venv)\n' "$fail" "$venv" >&2; exit 1; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" ||
        { printf "%s: run '%s/bin/pip install -r %s' and read its error\n" "$fail" "$venv" "$req" >&2; exit 1; }
    cp "$req" "$venv/tributary-requirements.txt"
}
