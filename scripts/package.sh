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

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
printf '%-12s %12s %12s\n' function binary zip
for fn in ingest transform load stream-sink; do
  zip="$lambda_dir/$fn/bootstrap.zip"
  [[ -f "$zip" ]] || { echo "package: $zip was not produced" >&2; exit 1; }
  bin="$target_dir/aarch64-unknown-linux-gnu/release/$fn"
  bin_size=$( [[ -f "$bin" ]] && stat -c %s "$bin" || echo "?")
  printf '%-12s %12s %12s\n' "$fn" "$bin_size" "$(stat -c %s "$zip")"
done
