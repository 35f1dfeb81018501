#!/usr/bin/env bash
# Lambda sizing from measurement: the first full ingest → transform → load of
# the 1M-order bench source, each stage run as its function would run on AWS:
# with the memory Terraform gives it (infra/variables.tf defaults, or the
# *_MB variables below) as a hard memory limit, and the CPU Lambda gives that
# memory (1,769 MB = one vCPU, proportionally below) as a CPU quota, both
# enforced by a cgroup. The databases run outside the cgroup, as RDS does.
#
#   scripts/bench-sizing.sh              (after scripts/bench-ingest.sh made bench_totesys)
#   BENCH_DB=bench_totesys_10m scripts/bench-sizing.sh   (10M orders: see bench-scale.sh)
#
# Each stage is invoked with `--one-run`, again and again until nothing is
# left, as the schedule and S3 events invoke the functions: a first load
# larger than one invocation goes in parts (TRIBUTARY_INGEST_MAX_ROWS rows
# per ingest run; the transform and load bound theirs).
#
# Prints per stage: wall seconds against the function's timeout, peak RSS
# against its memory, and the headroom of each. The same code runs in the
# functions and in `tributary` (the CLI calls the same stage functions), so
# the release CLI stands in for the function binaries (no AWS SDK build).
# Needs root and cgroup v1 cpu/memory controllers (as on these machines);
# says so and stops otherwise. A benchmark: exits 0 when a budget is missed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v /usr/bin/time >/dev/null || { echo "GNU time is missing: apt-get install -y time" >&2; exit 1; }
cg_cpu=/sys/fs/cgroup/cpu
cg_mem=/sys/fs/cgroup/memory
if [ "$(id -u)" != 0 ] || [ ! -w "$cg_cpu" ] || [ ! -w "$cg_mem" ]; then
  echo "bench-sizing: needs root and writable cgroup v1 controllers at $cg_cpu and $cg_mem" >&2
  exit 1
fi

default_of() { # the default of a Terraform number variable
  awk -v name="$1" '$0 ~ "variable \"" name "\"" { inside = 1 } inside && /default/ { print $3; exit }' infra/variables.tf
}
ingest_mb=${INGEST_MB:-$(default_of ingest_memory_mb)}
ingest_timeout=${INGEST_TIMEOUT:-$(default_of ingest_timeout_seconds)}
transform_mb=${TRANSFORM_MB:-$(default_of transform_memory_mb)}
transform_timeout=${TRANSFORM_TIMEOUT:-$(default_of transform_timeout_seconds)}
load_mb=${LOAD_MB:-$(default_of load_memory_mb)}
load_timeout=${LOAD_TIMEOUT:-$(default_of load_timeout_seconds)}

scripts/local-stack.sh start >/dev/null 2>&1
eval "$(scripts/local-stack.sh env)"
export RUST_LOG=warn
cargo build --release -p tributary >&2
bin="${CARGO_TARGET_DIR:-$root/target}/release/tributary"
base="${TOTESYS_DATABASE_URL%/*}"
source_url="$base/${BENCH_DB:-bench_totesys}"
orders=$(psql "$source_url" -Atc "select count(*) from sales_order" 2>/dev/null || echo 0)
if [ "${orders:-0}" -lt 1000000 ]; then
  echo "bench source ${BENCH_DB:-bench_totesys} needs >= 1M sales orders; run scripts/bench-ingest.sh first" >&2
  exit 1
fi
warehouse_db=bench_sizing_warehouse
psql "$TRIBUTARY_PG_ADMIN_URL" -qc "drop database if exists $warehouse_db with (force)" -c "create database $warehouse_db"
lake=$(mktemp -d)
group="tributary-sizing-$$"
cleanup() {
  rm -rf "$lake"
  rmdir "$cg_cpu/$group" "$cg_mem/$group" 2>/dev/null || true
}
trap cleanup EXIT
mkdir -p "$cg_cpu/$group" "$cg_mem/$group"
flags=(--totesys-url "$source_url" --warehouse-url "$base/$warehouse_db"
       --raw-url "file://$lake/raw" --processed-url "file://$lake/processed")

# Runs one stage as a function of $1 MB: prints "<seconds> <peak MB> <oom>".
as_function() {
  local mb=$1; shift
  echo 100000 >"$cg_cpu/$group/cpu.cfs_period_us"
  echo $(( mb * 100000 / 1769 )) >"$cg_cpu/$group/cpu.cfs_quota_us"
  echo $(( mb * 1024 * 1024 )) >"$cg_mem/$group/memory.limit_in_bytes"
  echo 0 >"$cg_mem/$group/memory.max_usage_in_bytes" 2>/dev/null || true
  local status=0
  sh -c 'echo $$ >"$1/cgroup.procs"; echo $$ >"$2/cgroup.procs"; shift 2; exec "$@"' _ \
    "$cg_cpu/$group" "$cg_mem/$group" /usr/bin/time -f "%e %M" -o "$lake/time" "$@" >"$lake/out" 2>"$lake/err" || status=$?
  local oom=no
  if [ "$status" != 0 ]; then
    oom="failed(exit $status): $(tail -n 1 "$lake/err")"
  fi
  awk -v oom="$oom" '{ printf "%s %.1f %s\n", $1, $2 / 1024, oom }' "$lake/time"
}

echo "bench-sizing: ${orders} sales orders; CPU = memory / 1769 MB of one vCPU, memory a hard limit"
# One invocation after another (`--one-run`: one bounded run each, as the
# function does) until the stage has nothing left; prints the slowest
# invocation's seconds, the highest peak, the first error and the count.
invocations() {
  local mb=$1; shift
  local worst_s=0 worst_mb=0 err=no n=0 s pk e
  : >"$lake/all-out"
  while :; do
    n=$((n + 1))
    read -r s pk e < <(as_function "$mb" "$@" --one-run)
    cat "$lake/out" >>"$lake/all-out"
    worst_s=$(awk -v a="$worst_s" -v b="$s" 'BEGIN { print (b > a ? b : a) }')
    worst_mb=$(awk -v a="$worst_mb" -v b="$pk" 'BEGIN { print (b > a ? b : a) }')
    [ "$e" = no ] || { err=$e; break; }
    grep -qE "goes on in parts|manifest\(s\) left" "$lake/out" || break
    [ "$n" -lt 200 ] || { err="more than 200 invocations"; break; }
  done
  echo "$worst_s $worst_mb $n $err"
}
read -r ingest_s ingest_peak ingest_n ingest_err < <(invocations "$ingest_mb" "$bin" ingest "${flags[@]}")
read -r transform_s transform_peak transform_n transform_err < <(invocations "$transform_mb" "$bin" transform "${flags[@]}")
facts=$(awk '$1 ~ /^fact_/ && NF == 2 { sum += $2 } END { print sum + 0 }' "$lake/all-out")
read -r load_s load_peak load_n load_err < <(invocations "$load_mb" "$bin" load "${flags[@]}")
rows=$(awk '/^load: manifest/ { sum += $5 } END { print sum + 0 }' "$lake/all-out")

report() { # name mb timeout seconds peak invocations error
  awk -v n="$1" -v mb="$2" -v to="$3" -v s="$4" -v pk="$5" -v calls="$6" -v err="$7" 'BEGIN {
    printf "%-10s %5d MB (%.3f vCPU)  %3d invocation(s), slowest %8.1f s of %4d s (%4.1fx headroom)  peak %6.1f MB of %5d (%4.1fx)  %s\n",
      n, mb, mb / 1769, calls, s, to, (s > 0 ? to / s : 0), pk, mb, (pk > 0 ? mb / pk : 0),
      (err == "no" && s <= to && pk < mb ? "fits" : "DOES NOT FIT " err)
  }'
}
printf '\n================ first full load, as the functions run it ================\n'
report ingest "$ingest_mb" "$ingest_timeout" "$ingest_s" "$ingest_peak" "$ingest_n" "$ingest_err"
report transform "$transform_mb" "$transform_timeout" "$transform_s" "$transform_peak" "$transform_n" "$transform_err"
report load "$load_mb" "$load_timeout" "$load_s" "$load_peak" "$load_n" "$load_err"
echo "transform wrote $facts fact rows; load applied $rows rows"
psql "$TRIBUTARY_PG_ADMIN_URL" -qc "drop database if exists $warehouse_db with (force)"
