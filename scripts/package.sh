#!/usr/bin/env bash
# Builds the four Lambda functions for arm64 (provided.al2023) as zips:
#   target/lambda/<function>/bootstrap.zip   (what infra/ deploys)
# and prints each binary's and zip's size.
#
# Needs cargo-lambda (installed here with pip when missing; it brings zig as
# the cross linker) and the aarch64-unknown-linux-gnu standard library.
#
# TLS to RDS needs Amazon's RDS CA bundle (not a public root): download
# global-bundle.pem from the RDS documentation and run
#   TRIBUTARY_PG_CA_BUNDLE=/path/global-bundle.pem make package
# then deploy with -var pg_ca_in_zip=true (it becomes /var/task/pg-ca.pem).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo lambda --version >/dev/null 2>&1; then
  echo "package: installing cargo-lambda (python3 -m pip install cargo-lambda; it brings zig)"
  python3 -m pip install --quiet cargo-lambda || {
    echo "package: cannot install cargo-lambda; install it with 'python3 -m pip install cargo-lambda'" >&2
    exit 1
  }
fi
if [[ -n "${TRIBUTARY_PG_CA_BUNDLE:-}" && ! -f "$TRIBUTARY_PG_CA_BUNDLE" ]]; then
  echo "package: TRIBUTARY_PG_CA_BUNDLE=$TRIBUTARY_PG_CA_BUNDLE is not a file" >&2
  exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  echo "package: the aarch64-unknown-linux-gnu standard library is missing." >&2
  echo "         add it with: rustup target add aarch64-unknown-linux-gnu" >&2
  exit 1
fi

lambda_dir="$PWD/target/lambda"
started=$(date +%s)
cargo lambda build --release --arm64 --output-format zip \
  -p tributary-lambdas --bins --lambda-dir "$lambda_dir"
echo "package: built in $(( $(date +%s) - started ))s"

# The release profile keeps line tables (readable backtraces for the CLI);
# the functions ship without debug sections: a quarter of the size, a third
# of the zip. llvm-strip reads aarch64 ELF on any host (Debian: llvm).
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
strip_tool=$(command -v llvm-strip || true)
if [[ -z "$strip_tool" ]]; then
  echo "package: llvm-strip not found (apt-get install llvm): zips keep their debug sections"
  [[ -z "${TRIBUTARY_PG_CA_BUNDLE:-}" ]] || { echo "package: adding the CA bundle needs llvm-strip's repacking step; install llvm" >&2; exit 1; }
fi
printf '%-12s %14s %14s %12s\n' function "binary (built)" "binary (zip)" zip
for fn in ingest transform load stream-sink; do
  zip="$lambda_dir/$fn/bootstrap.zip"
  [[ -f "$zip" ]] || { echo "package: $zip was not produced" >&2; exit 1; }
  bin="$target_dir/aarch64-unknown-linux-gnu/release/$fn"
  built=$(stat -c %s "$bin")
  if [[ -n "$strip_tool" ]]; then
    work=$(mktemp -d)
    "$strip_tool" --strip-debug -o "$work/bootstrap" "$bin"
    python3 - "$work/bootstrap" "$zip" "${TRIBUTARY_PG_CA_BUNDLE:-}" <<'PY'
import sys, zipfile
src, dst, ca = sys.argv[1], sys.argv[2], sys.argv[3]
def entry(name, mode):
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info
with zipfile.ZipFile(dst, "w") as z:
    with open(src, "rb") as f:
        z.writestr(entry("bootstrap", 0o100755), f.read(), compresslevel=9)
    if ca:
        with open(ca, "rb") as f:
            z.writestr(entry("pg-ca.pem", 0o100644), f.read(), compresslevel=9)
PY
    shipped=$(stat -c %s "$work/bootstrap")
    rm -rf "$work"
  else
    shipped=$built
  fi
  printf '%-12s %14s %14s %12s\n' "$fn" "$built" "$shipped" "$(stat -c %s "$zip")"
done
