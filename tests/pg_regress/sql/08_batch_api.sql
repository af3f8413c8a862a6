-- The Batch API's SQL surface with no batch open: the argument check, the batches view, the
-- status view's batch columns, and submitting, collecting and cancelling with nothing to do.
-- All in one transaction, rolled back at the end (the calls to the API need no commit).
\set VERBOSITY default
\set SHOW_CONTEXT never
-- The mock's root URL (http://127.0.0.1:PORT, the port chosen when the suite starts), from scripts/test.sh.
\set mock `echo "$DOCTROVE_TEST_MOCK"`
BEGIN;
CREATE TABLE doctrove_papers (
    doctrove_paper_id bigint PRIMARY KEY,
    doctrove_title text,
    doctrove_abstract text,
    doctrove_embedding vector(4)
);
CREATE INDEX ON doctrove_papers (doctrove_paper_id) WHERE doctrove_embedding IS NULL;
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_batches/dim=4/v1', true) IS NOT NULL AS pointed;

-- A negative limit is refused before anything is sent.
SAVEPOINT refused;
SELECT * FROM doctrove_embed.submit_batches(-1);
\echo :LAST_ERROR_SQLSTATE
ROLLBACK TO SAVEPOINT refused;

-- One row per batch, none yet.
SELECT attname, format_type(atttypid, atttypmod) AS type
FROM pg_attribute WHERE attrelid = 'doctrove_embed.batches'::regclass AND attnum > 0 ORDER BY attnum;
SELECT count(*) AS batches FROM doctrove_embed.batches;

-- Nothing pending and nothing open: submitting and collecting list the API's batches first
-- (none of this table's to adopt) and do nothing else; cancelling has nothing to cancel.
SELECT * FROM doctrove_embed.submit_batches();
SELECT * FROM doctrove_embed.collect_batches();
SELECT doctrove_embed.cancel_batches();

-- The status view's batch columns.
SELECT attname, format_type(atttypid, atttypmod) AS type
FROM pg_attribute WHERE attrelid = 'doctrove_embed.status'::regclass
    AND attname IN ('papers_in_batches', 'batch_tokens_used', 'live_cost_usd', 'batch_cost_usd')
ORDER BY attnum;
SELECT papers_in_batches, batch_tokens_used, live_cost_usd, batch_cost_usd FROM doctrove_embed.status;
ROLLBACK;
