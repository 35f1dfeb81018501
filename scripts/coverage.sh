#!/usr/bin/env bash
# Line coverage of the workspace with cargo-tarpaulin (LLVM engine), against
# the real local stack, printed per crate. `make coverage` runs it.
#
# The CLI binary is exercised by its tests as a separate process, which
# tarpaulin does not trace, so the figure that matters is the core crates'
# (lake, totesys, warehouse, markets, pipeline).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v cargo-tarpaulin >/dev/null 2>&1 || cargo install --locked cargo-tarpaulin
scripts/local-stack.sh start >/dev/null 2>&1
eval "$(scripts/local-stack.sh env)"
export TRIBUTARY_REQUIRE_STACK=1
python3 -c 'import pyarrow' 2>/dev/null || python3 -m pip install --quiet pyarrow
report=$(mktemp)
trap 'rm -f "$report"' EXIT
cargo tarpaulin --workspace --engine llvm --skip-clean \
  --target-dir "${TARPAULIN_TARGET_DIR:-$HOME/.cache/tributary/tarpaulin}" \
  --exclude-files 'tests/*' --exclude-files 'crates/*/tests/*' --out Stdout >"$report" 2>&1 || {
    tail -40 "$report" >&2
    exit 1
  }
python3 - "$report" <<'PY'
import collections, re, sys
totals = collections.defaultdict(lambda: [0, 0])
seen = False
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    if "Tested/Total Lines" in line:
        seen = True
        continue
    match = re.match(r"\|\| crates/([^/]+)/.*: (\d+)/(\d+)", line)
    if seen and match:
        totals[match[1]][0] += int(match[2])
        totals[match[1]][1] += int(match[3])
core = [0, 0]
print(f"{'crate':<12} {'lines':>13} {'coverage':>9}")
for name, (hit, total) in sorted(totals.items()):
    print(f"{name:<12} {hit:>6}/{total:<6} {100 * hit / max(total, 1):>8.1f}%")
    if name != "cli":
        core[0] += hit
        core[1] += total
print(f"{'core crates':<12} {core[0]:>6}/{core[1]:<6} {100 * core[0] / max(core[1], 1):>8.1f}%")
PY
