#!/usr/bin/env bash
# Builds the four Lambda functions for arm64 (provided.al2023) as zips:
#   target/lambda/<function>/bootstrap.zip   (what infra/ deploys)
# and prints each binary's and zip's size.
#
# Needs cargo-lambda (installed here with pip when missing; it brings zig as
# the cross linker) and the aarch64-unknown-linux-gnu standard library.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo lambda --version >/dev/null 2>&1; then
  echo "package: installing cargo-lambda (python3 -m pip install cargo-lambda; it brings zig)"
  python3 -m pip install --quiet cargo-lambda || {
    echo "package: cannot install cargo-lambda; install it with 'python3 -m pip install cargo-lambda'" >&2
    exit 1
  }
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
[[ -n "$strip_tool" ]] || echo "package: llvm-strip not found (apt-get install llvm): zips keep their debug sections"
printf '%-12s %14s %14s %12s\n' function "binary (built)" "binary (zip)" zip
for fn in ingest transform load stream-sink; do
  zip="$lambda_dir/$fn/bootstrap.zip"
  [[ -f "$zip" ]] || { echo "package: $zip was not produced" >&2; exit 1; }
  bin="$target_dir/aarch64-unknown-linux-gnu/release/$fn"
  built=$(stat -c %s "$bin")
  if [[ -n "$strip_tool" ]]; then
    work=$(mktemp -d)
    "$strip_tool" --strip-debug -o "$work/bootstrap" "$bin"
    python3 - "$work/bootstrap" "$zip" <<'PY'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = 0o100755 << 16  # a regular, executable file
info.compress_type = zipfile.ZIP_DEFLATED
with zipfile.ZipFile(dst, "w") as z, open(src, "rb") as f:
    z.writestr(info, f.read(), compresslevel=9)
PY
    shipped=$(stat -c %s "$work/bootstrap")
    rm -rf "$work"
  else
    shipped=$built
  fi
  printf '%-12s %14s %14s %12s\n' "$fn" "$built" "$shipped" "$(stat -c %s "$zip")"
done
