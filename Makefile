# doctrove_embed: developer commands. See README.md and CONTRIBUTING.md.
# PG=N picks the PostgreSQL major version (15, Debian's own, by default; 13, 17 and 18 are built
# from Debian's source packages by `make deps PG=N`, 16 comes from PyPI's pgserver wheel).
# `make test` without PG runs the whole suite on 15 and the version suite on 13, 16, 17 and 18.
PG_CONFIG := $(if $(filter-out 15,$(or $(PG),15)),/opt/doctrove_embed/pg$(PG)/bin/pg_config,/usr/lib/postgresql/15/bin/pg_config)

.PHONY: help deps install package lint test unit bench run stop clean

## help: this list of commands
help:
	@sed -n 's/^## \([a-z]*\): /\1\t/p' $(MAKEFILE_LIST) | expand -t 10

## deps: set up a fresh Debian 12 machine (idempotent; PG=N also builds PostgreSQL N)
deps:
	bash scripts/deps.sh

## install: build in release mode and install into the local PostgreSQL (15, or PG=N)
install:
	cargo pgrx install --release --pg-config $(PG_CONFIG)

## package: Debian packages in dist/ (postgresql-N-doctrove-embed for 15, or PG=N; on 15 also the pgvector backport and doctrove-model)
package: deps
	PG=$(or $(PG),15) bash scripts/package.sh

## lint: formatting, clippy with warnings as errors, and no module cycles
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	python3 scripts/check_cycles.py --self-test
	python3 scripts/check_cycles.py

## test: everything CI runs (sets up dependencies first, then lint); PG=N: the whole suite on N only
test: deps
	$(MAKE) -s lint
	PG_GIVEN=$(PG) bash scripts/test.sh

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

## clean: remove build output
clean:
	cargo clean
