-- Every failure raises an ERROR with its SQLSTATE and leaves every row as it was.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- The mock's root URL (http://127.0.0.1:PORT, the port chosen when the suite starts), from scripts/test.sh.
\set mock `echo "$DOCTROVE_TEST_MOCK"`
-- Retries are covered by the fault suite; here each failure shows at once.
SET doctrove_embed.max_retries = 0;
CREATE TABLE doctrove_papers (
    doctrove_paper_id bigint PRIMARY KEY,
    doctrove_title text,
    doctrove_abstract text,
    doctrove_embedding vector(4),
    plain_text text
);
INSERT INTO doctrove_papers SELECT g, 'Paper ' || g, 'Abstract ' || g, NULL FROM generate_series(1, 5) g;
CREATE VIEW embedded AS SELECT count(*) AS embedded FROM doctrove_papers WHERE doctrove_embedding IS NOT NULL;
CREATE INDEX ON doctrove_papers (doctrove_paper_id) WHERE doctrove_embedding IS NULL;

-- Configuration errors.
SET doctrove_embed."table" = 'no_such_table';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
SELECT get_papers_needing_embeddings_count();
\echo :LAST_ERROR_SQLSTATE
SET doctrove_embed."table" = 'a.b.c';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
SET doctrove_embed."table" = 'embedded';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
RESET doctrove_embed."table";
SET doctrove_embed.title_column = 'no_such_column';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
RESET doctrove_embed.title_column;
SET doctrove_embed.embedding_column = 'plain_text';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
RESET doctrove_embed.embedding_column;
SET doctrove_embed.id_column = 'plain_text';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
RESET doctrove_embed.id_column;
SET doctrove_embed.dimensions = 1536;
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
RESET doctrove_embed.dimensions;
SELECT * FROM embed_pending(0);
\echo :LAST_ERROR_SQLSTATE

-- The API answers with the wrong dimension for the column.
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_errors/dim=3/v1', false) IS NOT NULL AS pointed;
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE

-- Nothing listens there.
SET doctrove_embed.api_base_url = 'http://127.0.0.1:1/v1';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE

-- A wrong key: 401; the API quotes the key, the error does not.
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_errors/key=another-key/dim=4/v1', false) IS NOT NULL AS pointed;
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE

-- 4xx and 5xx carry the API's message.
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_errors/status=400/dim=4/v1', false) IS NOT NULL AS pointed;
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_errors/status=503/dim=4/v1', false) IS NOT NULL AS pointed;
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_errors/status=429/dim=4/v1', false) IS NOT NULL AS pointed;
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE

-- Too slow.
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_errors/latency=3000/dim=4/v1', false) IS NOT NULL AS pointed;
SET doctrove_embed.request_timeout_ms = 300;
-- The message names the URL, whose port changes from run to run: caught, and shown with the
-- port replaced.
DO $$
DECLARE
    error_hint text;
BEGIN
    PERFORM * FROM embed_pending(10);
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS error_hint = PG_EXCEPTION_HINT;
    RAISE NOTICE '%: %', SQLSTATE, regexp_replace(SQLERRM, '127\.0\.0\.1:[0-9]+', '127.0.0.1:PORT') USING HINT = error_hint;
END
$$;
RESET doctrove_embed.request_timeout_ms;

-- Answers that are not a valid embeddings response.
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_errors/body=garbage/dim=4/v1', false) IS NOT NULL AS pointed;
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_errors/body=random/dim=4/v1', false) IS NOT NULL AS pointed;
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_errors/drop=1/dim=4/v1', false) IS NOT NULL AS pointed;
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE

-- After all of that, no row was written.
SELECT * FROM embedded;
SELECT get_papers_needing_embeddings_count();
RESET doctrove_embed.api_base_url;
DROP VIEW embedded;
DROP TABLE doctrove_papers;
