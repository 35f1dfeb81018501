#!/usr/bin/env bash
# Benchmark of the market poller at real scale, in accelerated simulated time.
#
#   scripts/bench-markets.sh                 (10 simulated minutes at 4x: about 3 min)
#   scripts/bench-markets.sh --busy 45 --quiet-every 100000h --burst 0 --minutes 5
#                                            (the worst calm case: 45 symbols always moving)
#
# The simulated exchange lists 409 crypto symbols (12 busy, a trade every
# 2-8 s; the rest quiet, a trade every 15 min on average) and moves 120 quiet
# symbols within one minute at 5:00. It enforces Mercado Bitcoin's limits
# (1 request/s per endpoint, /{symbol}/trades being one endpoint for every
# symbol; 500/min overall) and answers 429 REQUEST_RATE_EXCEEDED beyond them.
# The poller runs as the ingest function does: one invocation a minute
# polling 55 s, a /tickers tick every 15 s.
#
# Prints, in simulated seconds: staleness from trade to stream (p50/p99/max)
# per activity class and per minute, against the floor measured in the same
# run (trade to the first /tickers call after it); the goal (p99 <= 60 s in
# minutes with at most 45 moving symbols) and the burst's bound; requests per
# endpoint (max per second, least gap, refusals). Extra flags go to
# `tributary bench-markets` (see --help); --check exits 1 when a goal is
# missed or a request broke a limit. The figures are in simulated time, so
# a debug build is enough.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export RUST_LOG="${RUST_LOG:-error}"
cargo build -p tributary >&2
bin="${CARGO_TARGET_DIR:-$root/target}/debug/tributary"
exec "$bin" bench-markets "$@"
