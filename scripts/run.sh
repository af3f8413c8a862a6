#!/usr/bin/env bash
# `make run`: the main job end to end. Loads papers (a generated sample, or DATA=arxiv.jsonl),
# lets doctrove_embed embed them all, builds the HNSW index and prints, for three example
# queries, the five most similar papers.
#
#   Embeddings: the local model server unless OPENAI_API_KEY is set: all-MiniLM-L6-v2
#               (vector(384)), or MODEL=all-mpnet-base-v2 (vector(768)), or any model folder
#               beside them; the column's dimension is the model's. With OPENAI_API_KEY,
#               OpenAI's text-embedding-3-small (vector(1536); OPENAI_BASE_URL and OPENAI_MODEL
#               override the endpoint and the model).
#   Database:   a throwaway cluster of its own (as postgres, port RUN_PORT, socket and data in
#               RUN_DIR) with the extension preloaded and its background workers doing the work,
#               unless DATABASE_URL is set: then that database, embedded by embed_pending() calls.
#
# `scripts/run.sh --stop` stops what a run left running (the cluster and the model server).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

RUN_DIR="${RUN_DIR:-/tmp/doctrove_embed_run}"
RUN_PORT="${RUN_PORT:-55433}"
MODEL_PORT="${MODEL_PORT:-18090}"
SAMPLE="${SAMPLE:-2000}"
DATA="${DATA:-}"
WORKERS="${WORKERS:-2}"
LOCAL_MODEL="${MODEL:-all-MiniLM-L6-v2}"

stop_model_server() {
    if [[ -f "$RUN_DIR/model.pid" ]]; then
        local pid
        pid="$(cat "$RUN_DIR/model.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        rm -f "$RUN_DIR/model.pid"
    fi
}

if [[ "${1:-}" == "--stop" ]]; then
    stop_model_server
    cluster_stop "$RUN_DIR"
    log "stopped the run's cluster and model server ($RUN_DIR)"
    exit 0
fi

# --- what to embed with ---------------------------------------------------------
if [[ -n "${OPENAI_API_KEY:-}" ]]; then
    api_base="${OPENAI_BASE_URL:-https://api.openai.com/v1}"
    model="${OPENAI_MODEL:-text-embedding-3-small}"
    dims=1536
    batch=250
    log "embeddings from $model at $api_base (OPENAI_API_KEY is set), vector($dims)"
else
    # The installed models are the folders beside the default one (make deps puts them there).
    models_dir="$(dirname "$MODEL_DIR")"
    model_folder="$models_dir/$LOCAL_MODEL"
    if [[ "$LOCAL_MODEL" == "$(basename "$MODEL_DIR")" ]]; then
        model_folder="$MODEL_DIR"
    fi
    # A folder's name only: letters, digits, '.', '_' and '-', not starting with '.'.
    if [[ ! "$LOCAL_MODEL" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ || ! -f "$model_folder/config.json" ]]; then
        echo "no model '$LOCAL_MODEL' in $models_dir; installed:" >&2
        for config in "$models_dir"/*/config.json; do echo "  MODEL=$(basename "$(dirname "$config")")" >&2; done
        exit 1
    fi
    api_base="http://127.0.0.1:$MODEL_PORT/v1"
    model="$LOCAL_MODEL"
    # The column's dimension is the model's: its hidden size (the models served pool token vectors).
    dims=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["hidden_size"])' "$model_folder/config.json")
    batch=64
    log "embeddings from the local model $model (no OPENAI_API_KEY), vector($dims)"
fi

log "building and installing the extension, the importer and the model server (release)"
make -s install >"${TMPDIR:-/tmp}/doctrove_embed_install.log" 2>&1 \
    || { cat "${TMPDIR:-/tmp}/doctrove_embed_install.log"; exit 1; }
cargo build -q --release -p doctrove_import -p doctrove_model

stop_model_server

# --- the database -----------------------------------------------------------------
# Settings for the sessions this script opens (embed_pending, search); the cluster's workers
# get the same ones from postgresql.conf.
session_settings="-c doctrove_embed.api_base_url=$api_base -c doctrove_embed.model=$model -c doctrove_embed.dimensions=0"
if [[ -n "${DATABASE_URL:-}" ]]; then
    dsn="$DATABASE_URL"
    log "working on DATABASE_URL (embedding with embed_pending; the workers need shared_preload_libraries)"
else
    dsn="host=$RUN_DIR port=$RUN_PORT user=postgres dbname=doctrove"
    log "starting a cluster in $RUN_DIR on port $RUN_PORT"
    key_setting=()
    if [[ -n "${OPENAI_API_KEY:-}" ]]; then
        key_setting=("doctrove_embed.api_key_file = '$RUN_DIR/data/doctrove_embed.key'")
    fi
    cluster_start "$RUN_DIR" "$RUN_PORT" \
        "shared_preload_libraries = 'doctrove_embed'" \
        "doctrove_embed.database = 'doctrove'" \
        "doctrove_embed.workers = $WORKERS" \
        "doctrove_embed.enabled = off" \
        "doctrove_embed.batch_size = $batch" \
        "doctrove_embed.naptime_ms = 1000" \
        "doctrove_embed.api_base_url = '$api_base'" \
        "doctrove_embed.model = '$model'" \
        "${key_setting[@]}"
    sudo -u postgres "$PG_BIN/createdb" -h "$RUN_DIR" -p "$RUN_PORT" doctrove
    if [[ -n "${OPENAI_API_KEY:-}" ]]; then
        # The key file: the server's own user alone reads it, and the key is in no statement,
        # command line or log. Written from a here-string (no process sees it as an argument).
        install -m 600 -o postgres /dev/stdin "$RUN_DIR/data/doctrove_embed.key" <<<"$OPENAI_API_KEY"
    fi
fi
# Started after the cluster, whose start empties RUN_DIR.
mkdir -p "$RUN_DIR"
if [[ -z "${OPENAI_API_KEY:-}" ]]; then
    log "starting the local model server on 127.0.0.1:$MODEL_PORT"
    # In a session of its own, so it outlives this script; it writes its own pid.
    setsid bash -c 'echo $$ >"$1/model.pid"; exec "$2" --model "$3" --listen "127.0.0.1:$4"' \
        bash "$RUN_DIR" "$ROOT/target/release/doctrove-model" "$model_folder" "$MODEL_PORT" \
        >"$RUN_DIR/model.log" 2>&1 </dev/null &
    for _ in $(seq 1 100); do [[ -s "$RUN_DIR/model.pid" ]] && break; sleep 0.05; done
    wait_started "$(cat "$RUN_DIR/model.pid")" "$RUN_DIR/model.log" "serving" "the model server"
    cat "$RUN_DIR/model.log"
fi

sql() { PGOPTIONS="$session_settings" psql "$dsn" -X -q -v ON_ERROR_STOP=1 "$@"; }
# sql_with_key: like sql, for the sessions that call the API. On a database of DATABASE_URL
# (whose server may be elsewhere, so no key file can be put beside it) the key goes in the
# connection's startup options: never in a statement, so never in log_statement output,
# pg_stat_activity or pg_stat_statements.
sql_with_key() {
    if [[ -n "${OPENAI_API_KEY:-}" && -n "${DATABASE_URL:-}" ]]; then
        PGOPTIONS="$session_settings -c doctrove_embed.api_key=$OPENAI_API_KEY" psql "$dsn" -X -q -v ON_ERROR_STOP=1 "$@"
    else
        sql "$@"
    fi
}

# --- papers -------------------------------------------------------------------------
if [[ -n "$DATA" ]]; then
    file="$DATA"
else
    file="$RUN_DIR/sample.jsonl"
    "$ROOT/target/release/doctrove-sample" --count "$SAMPLE" >"$file"
    log "generated $SAMPLE sample papers across 8 fields in $file"
fi
log "loading $file"
"$ROOT/target/release/doctrove-import" --dsn "$dsn" --file "$file" --create-dims "$dims"
table_dims=$(sql -At -c "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'doctrove_papers'::regclass AND attname = 'doctrove_embedding'")
if [[ "$table_dims" != "$dims" ]]; then
    echo "doctrove_papers.doctrove_embedding is vector($table_dims), but $model makes $dims dimensions" >&2
    exit 1
fi
sql -c "SELECT doctrove_embed.create_pending_index()" >/dev/null

# --- embedding ----------------------------------------------------------------------
total=$(sql -At -c "SELECT get_papers_needing_embeddings_count()")
log "embedding $total pending papers"
started=$(date +%s)
progress() {
    local pending="$1" elapsed=$(( $(date +%s) - started ))
    local done=$(( total - pending ))
    local rate=$(( elapsed > 0 ? done * 60 / elapsed : 0 ))
    printf '    %s/%s embedded, %s pending, %s papers/min\n' "$done" "$total" "$pending" "$rate"
}
if [[ -z "${DATABASE_URL:-}" ]]; then
    sql -c "ALTER SYSTEM SET doctrove_embed.enabled = on" -c "SELECT pg_reload_conf()" >/dev/null
    last_pending=-1 last_change=$(date +%s)
    while :; do
        pending=$(sql -At -c "SELECT get_papers_needing_embeddings_count()")
        progress "$pending"
        [[ "$pending" == 0 ]] && break
        if [[ "$pending" != "$last_pending" ]]; then
            last_pending=$pending last_change=$(date +%s)
        elif (( $(date +%s) - last_change > 120 )); then
            echo "no progress for 2 minutes; the workers say:" >&2
            sql -c "SELECT worker, state, last_error FROM doctrove_embed.workers" >&2
            tail -20 "$RUN_DIR/server.log" >&2
            exit 1
        fi
        sleep 3
    done
    sql -c "SELECT pending, embedded, failed, workers_running FROM doctrove_embed.status"
else
    while :; do
        pending=$(sql -At -c "SELECT get_papers_needing_embeddings_count()")
        progress "$pending"
        [[ "$pending" == 0 ]] && break
        result=$(sql_with_key -At <<<"SELECT successful_embeddings FROM embed_pending($batch);")
        if [[ "$result" == 0 ]]; then
            echo "embed_pending made no progress; see doctrove_embed.failures" >&2
            exit 1
        fi
    done
fi
log "all papers embedded in $(( $(date +%s) - started ))s"

# --- similarity search ------------------------------------------------------------------
log "building the HNSW index"
sql -At -c "SELECT doctrove_embed.create_hnsw_index()"

sql -At -c "SELECT doctrove_embed.create_text_index()" >/dev/null

# Three queries, each showing one thing search does: a similarity threshold, a filter on the
# table's columns (each value bound in the column's type), and hybrid search (the vector ranking
# fused with the full text ranking of the query's words).
queries=(
    "astro-ph.GA|(similarity at least 0.25)|doctrove_embed.search(:'query', 5, 0.25) WITH ORDINALITY AS s(paper_id, title, distance, similarity, data, rank)|How does dark matter shape the rotation of spiral galaxies?"
    "q-bio.BM|(published from March 2024)|doctrove_embed.search(:'query', 5, NULL, '{\"doctrove_primary_date\": {\">=\": \"2024-03-01\"}}') WITH ORDINALITY AS s(paper_id, title, distance, similarity, data, rank)|protein structure and folding of enzymes"
    "cs.LG|(hybrid: vectors and words)|doctrove_embed.hybrid_search(:'query', 5) WITH ORDINALITY AS s(paper_id, title, score, vector_rank, text_rank, similarity, rank)|training deep neural networks to classify images"
)
for entry in "${queries[@]}"; do
    IFS='|' read -r category how from query <<<"$entry"
    printf '\nThe 5 papers most similar to "%s" %s:\n' "$query" "$how"
    sql_with_key -v query="$query" -v category="$category" -v with_topics="$([[ -z "$DATA" ]] && echo true || echo false)" <<SQL
\\pset footer off
CREATE TEMP TABLE nearest AS
SELECT s.rank,
       round(s.similarity::numeric, 3) AS similarity,
       p.doctrove_categories[1] AS category,
       left(s.title, 90) AS title
FROM $from
JOIN doctrove_papers AS p ON p.doctrove_paper_id::text = s.paper_id;
SELECT * FROM nearest ORDER BY rank;
\\if :with_topics
\\pset tuples_only on
\\pset format unaligned
SELECT format('    on topic: %s/5 in %s', count(*) FILTER (WHERE category = :'category'), :'category') FROM nearest;
\\endif
SQL
done

echo
if [[ -z "${DATABASE_URL:-}" ]]; then
    log "the cluster keeps running: psql \"$dsn\""
    log "try: SELECT * FROM doctrove_embed.search('your question', 5);  SELECT * FROM doctrove_embed.status;"
    log "stop it (and the model server) with: bash scripts/run.sh --stop"
else
    log "done; the papers are in doctrove_papers of DATABASE_URL"
fi
