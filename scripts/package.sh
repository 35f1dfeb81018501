#!/usr/bin/env bash
# Builds the four Lambda functions for arm64 (provided.al2023) as zips:
#   target/lambda/<function>/bootstrap.zip   (what infra/ deploys)
# and prints each binary's and zip's size.
#
# Needs cargo-lambda (installed here with pip when missing; it brings zig as
# the cross linker) and the aarch64-unknown-linux-gnu standard library.
#
# TLS to RDS needs Amazon's RDS CA bundle (RDS certificates do not chain to a
# public root). Download it once and name it here:
#   curl -fsSLo global-bundle.pem https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
#   PG_CA_BUNDLE=$PWD/global-bundle.pem make package
# Every zip then carries it as pg-ca.pem (/var/task/pg-ca.pem in Lambda, named
# by TRIBUTARY_PG_CA_FILE, infra/functions.tf), and target/lambda/pg-ca.pem is
# a copy that tells Terraform and make deploy the zips carry it.
# PG_CA_BUNDLE=none (or unset) packages without a bundle and removes that copy.
# (TRIBUTARY_PG_CA_BUNDLE, the older name, is read when PG_CA_BUNDLE is unset.)
#
# Configured sources (crates/sources, infra/README.md "Configured sources and
# dbt") are deployed with the code: every <name>.toml of SOURCES_DIR (default
# sources/ at the repository root, when it exists) goes into the ingest and
# load zips as sources/<name>.toml, which the functions read from
# /var/task/sources (TRIBUTARY_SOURCES_DIR, infra/functions.tf). No folder, or
# SOURCES_DIR=none: no configured source is deployed. Each file is checked
# before the build: a file the functions would refuse stops the packaging.
set -euo pipefail
cd "$(dirname "$0")/.."

bundle="${PG_CA_BUNDLE:-${TRIBUTARY_PG_CA_BUNDLE:-}}"
[[ "$bundle" != none ]] || bundle=""
if [[ -n "$bundle" ]]; then
  if [[ ! -f "$bundle" ]]; then
    echo "package: PG_CA_BUNDLE=$bundle is not a file (download https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem)" >&2
    exit 1
  fi
  if ! grep -q -- '-----BEGIN CERTIFICATE-----' "$bundle"; then
    echo "package: PG_CA_BUNDLE=$bundle holds no PEM certificate (expected the RDS global-bundle.pem)" >&2
    exit 1
  fi
fi

sources_dir="${SOURCES_DIR:-sources}"
[[ "$sources_dir" != none ]] || sources_dir=""
if [[ -n "${SOURCES_DIR:-}" && -n "$sources_dir" && ! -d "$sources_dir" ]]; then
  echo "package: SOURCES_DIR=$sources_dir is not a folder of source files (<name>.toml)" >&2
  exit 1
fi
source_files=()
if [[ -n "$sources_dir" && -d "$sources_dir" ]]; then
  shopt -s nullglob
  source_files=("$sources_dir"/*.toml)
  shopt -u nullglob
  for file in "${source_files[@]}"; do
    name=$(basename "$file" .toml)
    # The functions read the file's name as the source's: the same rule as
    # crates/sources/src/config.rs (lower-case letters, digits, _; at most 40).
    if ! [[ "$name" =~ ^[a-z_][a-z0-9_]{0,39}$ ]]; then
      echo "package: $file: a source file's name is the source's: lower-case letters, digits and _ (at most 40), e.g. olist.toml" >&2
      exit 1
    fi
    if ! grep -Eq '^\[source\]' "$file"; then
      echo "package: $file has no [source] table: not a source file (examples/sources/)" >&2
      exit 1
    fi
  done
fi

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
# The marker goes first: a failed build must not leave a stale one behind.
rm -f "$lambda_dir/pg-ca.pem"
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
  shipped=$built
  # The source files go to the functions that run them.
  packed_sources=()
  if [[ "$fn" == ingest || "$fn" == load ]]; then
    packed_sources=("${source_files[@]}")
  fi
  if [[ -n "$strip_tool" || -n "$bundle" || ${#packed_sources[@]} -gt 0 ]]; then
    # Repack: the (stripped) binary as bootstrap, plus the CA bundle and the
    # source files if any.
    work=$(mktemp -d)
    if [[ -n "$strip_tool" ]]; then
      "$strip_tool" --strip-debug -o "$work/bootstrap" "$bin"
    else
      cp "$bin" "$work/bootstrap"
    fi
    python3 - "$work/bootstrap" "$zip" "$bundle" "${packed_sources[@]}" <<'PY'
import os, sys, zipfile
src, dst, ca, sources = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
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
    for path in sources:
        with open(path, "rb") as f:
            name = "sources/" + os.path.basename(path)
            z.writestr(entry(name, 0o100644), f.read(), compresslevel=9)
PY
    shipped=$(stat -c %s "$work/bootstrap")
    rm -rf "$work"
  fi
  printf '%-12s %14s %14s %12s\n' "$fn" "$built" "$shipped" "$(stat -c %s "$zip")"
done
if [[ -n "$bundle" ]]; then
  cp "$bundle" "$lambda_dir/pg-ca.pem"
  echo "package: every zip carries $bundle as pg-ca.pem (TLS to RDS verified against it)"
else
  echo "package: no CA bundle in the zips (PG_CA_BUNDLE unset or none): TLS is verified against the system roots only, which do not include the RDS CA"
fi
if [[ ${#source_files[@]} -gt 0 ]]; then
  echo "package: the ingest and load zips carry ${#source_files[@]} source file(s) from $sources_dir/ as sources/: $(basename -a "${source_files[@]}" | tr '\n' ' ')"
else
  echo "package: no source files (no ${sources_dir:-sources}/ folder with <name>.toml, or SOURCES_DIR=none): no configured source is deployed"
fi
