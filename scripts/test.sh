#!/usr/bin/env bash
# Everything `make test` runs, in order: unit tests of the pure crates and the model server,
# then on each PostgreSQL version the version suite (the #[pg_test]s in a pgrx-managed cluster;
# against the release build installed into that server, the pg_regress golden tests and the
# client-side embed_pending, fault, worker and upgrade tests, with the mock server), and on the
# main version the rest (security, robustness, pg_cron, importer, `make run` three ways).
# Each version suite builds that version's Debian package (`make package`) and tests the files
# it installs: on 15 installed by apt (with the pgvector backport; the model server's package is
# tested from installation to purge), on the others copied into the server built here.
# Without PG (CI): the whole suite on 15 and the version suite on 13, 16, 17 and 18, one summary
# line per version. With PG=N: the whole suite on N.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/package_tests.sh"
cd "$ROOT"

if [[ -n "${PG_GIVEN:-}" ]]; then
    MAIN_PG="$PG_GIVEN"; OTHER_PGS=()
else
    MAIN_PG=15; OTHER_PGS=(13 16 17 18)
fi
TEST_DIR="${TEST_DIR:-/tmp/doctrove_embed_test}"
PG_PORT="${PG_PORT:-$(free_port 55432)}"
# The mock listens on a port the system picks (mock_start sets MOCK_URL); the golden tests and the
# client-side tests find it in DOCTROVE_TEST_MOCK.
PGRX_DIR=/tmp/doctrove_embed_pgrx
# Every attack of the security suite (crates/doctrove_itest/tests/security.rs, the model server's
# crates/doctrove_model/tests/http_limits.rs) appends `attack NAME worked=0|1` here.
export DOCTROVE_SECURITY_LOG="$TEST_DIR.security.log"
rm -f "$DOCTROVE_SECURITY_LOG"
started_at=$(date +%s)
summaries=()

# The released install scripts each version suite put in place for the upgrade tests.
remove_released_scripts() {
    local script name
    for v in "${OTHER_PGS[@]}" "$MAIN_PG"; do
        for script in sql/released/doctrove_embed--*.sql; do
            name="$(basename "$script")"
            rm -f "$(pg_prefix "$v")/share/postgresql/extension/$name" "/usr/share/postgresql/$v/extension/$name"
        done
    done
}
cleanup() {
    mock_stop
    cluster_stop "$TEST_DIR"
    cluster_stop "$TEST_DIR.foreign"
    [[ -z "${MODEL_PACKAGE_PID:-}" ]] || kill "$MODEL_PACKAGE_PID" 2>/dev/null || true
    remove_released_scripts
}
trap cleanup EXIT

# passed LOG: the number of tests cargo reported as passed in LOG.
passed() { { grep -o 'test result: ok\. [0-9]* passed' "$1" || true; } | awk '{n += $4} END {print n + 0}'; }

log "unit tests: embed_core, the HTTP server, the mock and the importer"
cargo test -p embed_core -p http_endpoint -p doctrove_mock -p doctrove_import

log "the local model server against the reference, and all-mpnet-base-v2 against sentence-transformers (release build: the encoder is slow unoptimised)"
"$REFERENCE_VENV/bin/python" crates/doctrove_model/reference/reference_vectors.py \
    "$MODEL_DIR" "$TEST_DIR.reference.json" \
    --check crates/doctrove_model/tests/fixtures/reference.json
DOCTROVE_MPNET_DIR="$MPNET_DIR" cargo test --release -p doctrove_model

# version_suite N: the tests every supported PostgreSQL version gets, leaving the test cluster
# and the mock running for the rest of the suite. Adds a summary line.
version_suite() {
    local v="$1" version_started
    version_started=$(date +%s)
    use_pg "$v"
    log "PostgreSQL $v: dependencies"
    bash scripts/deps.sh >"$TEST_DIR.deps.log" 2>&1 || { cat "$TEST_DIR.deps.log"; exit 1; }

    log "PostgreSQL $v: #[pg_test]s (cargo pgrx test, cluster run as postgres)"
    rm -rf "$PGRX_DIR"; mkdir -p "$PGRX_DIR"; chown postgres "$PGRX_DIR"
    cargo pgrx test "pg$v" --runas postgres --pgdata "$PGRX_DIR/data" 2>&1 | tee "$TEST_DIR.pg_test.log"
    local pg_tests; pg_tests=$(passed "$TEST_DIR.pg_test.log")

    log "PostgreSQL $v: the Debian package (make package), its files in place of a build's"
    local package_started; package_started=$(date +%s)
    install_extension_package "$v"
    local package_seconds=$(( $(date +%s) - package_started ))
    # The install scripts as released, for the upgrade tests to start from.
    install -m 644 sql/released/doctrove_embed--*.sql \
        "$("$PG_CONFIG" --sharedir)/extension/"

    cargo build -q --release -p doctrove_mock
    mock_stop
    mock_start "$TEST_DIR.mock.log"
    log "PostgreSQL $v: test cluster on port $PG_PORT, mock at $MOCK_URL"
    cluster_start "$TEST_DIR" "$PG_PORT" \
        "shared_preload_libraries = 'pg_cron,doctrove_embed'" \
        "cron.database_name = 'postgres'" \
        "doctrove_embed.workers = 0" \
        "doctrove_embed.api_base_url = '$MOCK_URL/v1'" \
        "doctrove_embed.api_key = 'sk-regress-0123456789'"

    log "PostgreSQL $v: pg_regress golden tests (tests/pg_regress/)"
    local regress_out="$TEST_DIR/regress" tests
    mkdir -p "$regress_out"
    tests=$(cd tests/pg_regress/sql && ls *.sql | sed 's/\.sql$//' | sort)
    # The SQL files read the mock's root URL from DOCTROVE_TEST_MOCK (psql's \set with backquotes).
    if ! DOCTROVE_TEST_MOCK="$MOCK_URL" "$("$PG_CONFIG" --pgxs | xargs dirname)/../test/regress/pg_regress" \
            --bindir="$PG_BIN" --host="$TEST_DIR" --port="$PG_PORT" --user=postgres \
            --inputdir=tests/pg_regress --outputdir="$regress_out" --dbname=doctrove_regress $tests; then
        cat "$regress_out/regression.diffs" 2>/dev/null || true
        exit 1
    fi

    log "PostgreSQL $v: embed_pending, fault, worker and upgrade tests against the installed extension"
    client_tests embed_pending faults worker upgrade
    local client; client=$(passed "$TEST_DIR.itest.log")
    summaries+=("PostgreSQL $("$PG_CONFIG" --version | awk '{print $2}'): $pg_tests #[pg_test]s, $(wc -w <<<"$tests") golden tests, $client client-side tests passed in $(( $(date +%s) - version_started )) s (package $package_seconds s)")
}

# client_tests NAME...: the named test files of crates/doctrove_itest against the test cluster and mock.
figures="$TEST_DIR/fault_figures.txt"
client_tests() {
    local args=()
    for t in "$@"; do args+=(--test "$t"); done
    DOCTROVE_TEST_FIGURES="$figures" \
    DOCTROVE_TEST_PG="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres" \
    DOCTROVE_TEST_MOCK="$MOCK_URL" \
    DOCTROVE_TEST_PG_BIN="$PG_BIN" \
        cargo test -p doctrove_itest "${args[@]}" -- --test-threads=2 2>&1 | tee "$TEST_DIR.itest.log"
}

mkdir -p "$TEST_DIR"
rm -f "$figures"
for v in "${OTHER_PGS[@]}"; do version_suite "$v"; done
version_suite "$MAIN_PG"
# A library of 15 finds every symbol it needs in 16, so 16 refuses it with PostgreSQL's own
# version check; between majors further apart the loader may refuse it first (a symbol gone).
if [[ "$MAIN_PG" == 15 && " ${OTHER_PGS[*]} " == *" 16 "* ]]; then
    log "a package's library in a server of another major: 18's in 15, 15's in 16"
    check_foreign_major_refused "$TEST_DIR" "$PG_PORT" 18
    use_pg 16
    foreign_port=$(free_port 55440)
    cluster_start "$TEST_DIR.foreign" "$foreign_port"
    check_foreign_major_refused "$TEST_DIR.foreign" "$foreign_port" 15 | tee "$TEST_DIR.foreign.log"
    grep -q "version mismatch" "$TEST_DIR.foreign.log" \
        || { echo "PostgreSQL 16 did not refuse 15's library with its version check" >&2; exit 1; }
    cluster_stop "$TEST_DIR.foreign"
    use_pg "$MAIN_PG"
fi
if [[ "$MAIN_PG" == 15 ]]; then
    log "the doctrove-model package: systemd unit, ExecStart as written, remove and purge"
    model_package_started=$(date +%s)
    model_package_test "$ROOT/crates/doctrove_model/tests/fixtures/reference.json"
    summaries+=("doctrove-model package: installed, served, removed and purged in $(( $(date +%s) - model_package_started )) s")
fi

log "PostgreSQL $MAIN_PG: security, robustness, setup, pg_cron and importer tests (worker tests start clusters of their own)"
client_tests security robustness setup cron importer batch_api search

log "make run end to end on PostgreSQL $MAIN_PG: local model, generated sample, background workers, HNSW, three queries"
run_log="$TEST_DIR/make_run.log"
run_port=$(free_port 55435) model_port=$(free_port 18092)
RUN_DIR=/tmp/doctrove_embed_run_ci RUN_PORT=$run_port MODEL_PORT=$model_port \
    make -s run SAMPLE=400 2>&1 | tee "$run_log" | grep -E "^==>|on topic"
[[ $(grep -c "on topic: 5/5" "$run_log") == 3 ]] || { echo "make run: a query's five nearest papers are not all on its topic" >&2; exit 1; }
grep -q "all papers embedded" "$run_log" || { echo "make run did not embed every paper" >&2; exit 1; }

log "make run DATABASE_URL=... (a database of the cluster above, embedded with embed_pending)"
sudo -u postgres "$PG_BIN/createdb" -h /tmp/doctrove_embed_run_ci -p "$run_port" via_url
DATABASE_URL="host=/tmp/doctrove_embed_run_ci port=$run_port user=postgres dbname=via_url" \
    RUN_DIR=/tmp/doctrove_embed_run_ci MODEL_PORT=$model_port \
    make -s run SAMPLE=160 2>&1 | tee "$run_log" | grep -E "^==>|on topic"
embedded_via_url=$(psql "host=/tmp/doctrove_embed_run_ci port=$run_port user=postgres dbname=via_url" -XAt \
    -c "SELECT count(doctrove_embedding) FROM doctrove_papers")
RUN_DIR=/tmp/doctrove_embed_run_ci bash scripts/run.sh --stop
[[ "$embedded_via_url" == 160 && $(grep -c "on topic: 5/5" "$run_log") == 3 ]] \
    || { echo "make run with DATABASE_URL: $embedded_via_url of 160 embedded" >&2; exit 1; }
! pgrep -f "doctrove-model .*127.0.0.1:$model_port" >/dev/null || { echo "make stop left the model server running" >&2; exit 1; }

log "make run MODEL=all-mpnet-base-v2: the second local model, vector(768); an unknown MODEL refused with the list"
run_port=$(free_port 55437) model_port=$(free_port 18093)
RUN_DIR=/tmp/doctrove_embed_run_ci_mpnet RUN_PORT=$run_port MODEL_PORT=$model_port \
    make -s run MODEL=all-mpnet-base-v2 SAMPLE=160 2>&1 | tee "$run_log" | grep -E "^==>|on topic"
mpnet_dims=$(psql "host=/tmp/doctrove_embed_run_ci_mpnet port=$run_port user=postgres dbname=doctrove" -XAt \
    -c "SELECT count(*) FILTER (WHERE vector_dims(doctrove_embedding) = 768) FROM doctrove_papers")
RUN_DIR=/tmp/doctrove_embed_run_ci_mpnet bash scripts/run.sh --stop
[[ "$mpnet_dims" == 160 && $(grep -c "on topic: 5/5" "$run_log") == 3 ]] \
    || { echo "make run MODEL=all-mpnet-base-v2: $mpnet_dims of 160 papers with 768 dimensions" >&2; exit 1; }
unknown_model=$(MODEL=no-such-model bash scripts/run.sh 2>&1) && { echo "an unknown MODEL was not refused" >&2; exit 1; }
grep -q "MODEL=all-mpnet-base-v2" <<<"$unknown_model" || { echo "$unknown_model" >&2; exit 1; }
MODEL=.. bash scripts/run.sh >/dev/null 2>&1 && { echo "MODEL=.. (a folder outside the models) was not refused" >&2; exit 1; }

log "make run DATA=... with OPENAI_API_KEY (pointed at the mock): vector(1536), the key sent and never logged"
run_key="sk-run-$(date +%s%N)"
target/release/doctrove-sample --count 100 --seed 9 >"$TEST_DIR/snapshot.jsonl"
run_port=$(free_port 55436)
RUN_DIR=/tmp/doctrove_embed_run_ci_openai RUN_PORT=$run_port OPENAI_API_KEY="$run_key" \
    OPENAI_BASE_URL="$MOCK_URL/s=make-run/v1" \
    make -s run DATA="$TEST_DIR/snapshot.jsonl" >"$TEST_DIR/make_run_openai.log" 2>&1 \
    || { cat "$TEST_DIR/make_run_openai.log"; exit 1; }
dims=$(psql "host=/tmp/doctrove_embed_run_ci_openai port=$run_port user=postgres dbname=doctrove" -XAt \
    -c "SELECT count(*) FILTER (WHERE vector_dims(doctrove_embedding) = 1536) FROM doctrove_papers")
leaks=$(cat /tmp/doctrove_embed_run_ci_openai/server.log "$TEST_DIR/make_run_openai.log" | grep -c "$run_key" || true)
RUN_DIR=/tmp/doctrove_embed_run_ci_openai bash scripts/run.sh --stop
sent=$(curl -s "$MOCK_URL/stats/make-run" | grep -c "Bearer $run_key" || true)
echo "papers with a 1536-dimension vector: $dims of 100; key sent to the API: $sent; log lines showing it: $leaks"
[[ "$dims" == 100 && "$sent" == 1 && "$leaks" == 0 ]] || exit 1

if [[ "$MAIN_PG" == 15 ]]; then
    log "apt-get remove postgresql-15-doctrove-embed"
    remove_released_scripts
    check_extension_package_removal
fi

log "fault suite figures"
sort "$figures"

log "security suite"
tried=$(grep -c '^attack ' "$DOCTROVE_SECURITY_LOG" || true)
worked=$(grep -c 'worked=1$' "$DOCTROVE_SECURITY_LOG" || true)
grep 'worked=1$' "$DOCTROVE_SECURITY_LOG" || true
echo "security suite: $tried attacks tried, $worked worked"
(( tried > 0 && worked == 0 )) || exit 1

log "summary"
printf '%s\n' "${summaries[@]}"
echo "make test took $(( $(date +%s) - started_at )) s"

log "all tests passed"
