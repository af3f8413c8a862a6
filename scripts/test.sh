#!/usr/bin/env bash
# Everything `make test` runs, in order: unit tests of the pure crates, the #[pg_test]s in a
# pgrx-managed cluster, then (against the release build installed into PostgreSQL 15) the
# pg_regress golden tests and the client-side integration tests, with the mock server.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

TEST_DIR="${TEST_DIR:-/tmp/doctrove_embed_test}"
PG_PORT="${PG_PORT:-55432}"
MOCK_PORT="${MOCK_PORT:-18089}"
PGRX_DIR=/tmp/doctrove_embed_pgrx

cleanup() {
    mock_stop
    cluster_stop "$TEST_DIR"
}
trap cleanup EXIT

log "unit tests: embed_core, the mock and the importer"
cargo test -p embed_core -p doctrove_mock -p doctrove_import

log "#[pg_test]s (cargo pgrx test, cluster run as postgres)"
rm -rf "$PGRX_DIR"; mkdir -p "$PGRX_DIR"; chown postgres "$PGRX_DIR"
cargo pgrx test pg15 --runas postgres --pgdata "$PGRX_DIR/data"

log "install the release build into PostgreSQL 15"
make -s install

log "test cluster on port $PG_PORT, mock on port $MOCK_PORT"
cargo build -q --release -p doctrove_mock
mkdir -p "$TEST_DIR"
mock_start "$MOCK_PORT" "$TEST_DIR/mock.log"
cluster_start "$TEST_DIR" "$PG_PORT" \
    "shared_preload_libraries = 'pg_cron,doctrove_embed'" \
    "cron.database_name = 'postgres'" \
    "doctrove_embed.workers = 0" \
    "doctrove_embed.api_base_url = 'http://127.0.0.1:$MOCK_PORT/v1'" \
    "doctrove_embed.api_key = 'sk-regress-0123456789'"

log "pg_regress golden tests (pg_test/)"
regress_out="$TEST_DIR/regress"
mkdir -p "$regress_out"
tests=$(cd pg_test/sql && ls *.sql | sed 's/\.sql$//' | sort)
if ! "$(/usr/lib/postgresql/15/bin/pg_config --pgxs | xargs dirname)/../test/regress/pg_regress" \
        --bindir="$PG_BIN" --host="$TEST_DIR" --port="$PG_PORT" --user=postgres \
        --inputdir=pg_test --outputdir="$regress_out" --dbname=doctrove_regress $tests; then
    cat "$regress_out/regression.diffs" 2>/dev/null || true
    exit 1
fi

log "integration and fault tests against the installed extension (worker tests start clusters of their own)"
figures="$TEST_DIR/fault_figures.txt"
rm -f "$figures"
DOCTROVE_TEST_FIGURES="$figures" \
DOCTROVE_TEST_PG="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres" \
DOCTROVE_TEST_MOCK="http://127.0.0.1:$MOCK_PORT" \
    cargo test -p doctrove_itest -- --test-threads=2

log "fault suite figures"
sort "$figures"

log "all tests passed"
