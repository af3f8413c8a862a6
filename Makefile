# doctrove_embed: developer commands. See README.md and CONTRIBUTING.md.
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config

.PHONY: deps install test unit bench run clean

## deps: set up a fresh Debian 12 machine (idempotent)
deps:
	bash scripts/deps.sh

## install: build in release mode and install into the local PostgreSQL 15
install:
	cargo pgrx install --release --pg-config $(PG_CONFIG)

## test: everything CI runs (sets up dependencies first)
test: deps
	bash scripts/test.sh

## bench: the throughput comparison with the current approach (prints a table, writes bench/results/latest.json)
bench:
	bash bench/run.sh $(BENCH_ARGS)

## unit: only the tests that need no database
unit:
	cargo test -p embed_core -p doctrove_mock -p doctrove_import

clean:
	cargo clean
