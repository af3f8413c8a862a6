# doctrove_embed: developer commands. See README.md and CONTRIBUTING.md.
PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config

.PHONY: deps install test unit bench run stop clean

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
bench: deps
	bash bench/run.sh $(BENCH_ARGS)

## run: the main job end to end (local model, or OpenAI with OPENAI_API_KEY; DATA=arxiv.jsonl, DATABASE_URL=...)
run: deps
	bash scripts/run.sh

## stop: stop the cluster and the model server that `make run` left running
stop:
	bash scripts/run.sh --stop

## unit: only the tests that need no database (and the model's, which need `make deps`)
unit:
	cargo test -p embed_core -p http_endpoint -p doctrove_mock -p doctrove_import
	cargo test --release -p doctrove_model

clean:
	cargo clean
