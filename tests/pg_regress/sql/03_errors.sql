-- Every failure raises an ERROR with its SQLSTATE and leaves every row as it was.
\set VERBOSITY default
\set SHOW_CONTEXT never
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
SET doctrove_embed.api_base_url = 'http://127.0.0.1:18089/s=regress_errors/dim=3/v1';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE

-- Nothing listens there.
SET doctrove_embed.api_base_url = 'http://127.0.0.1:1/v1';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE

-- A wrong key: 401; the API quotes the key, the error does not.
SET doctrove_embed.api_base_url = 'http://127.0.0.1:18089/s=regress_errors/key=another-key/dim=4/v1';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE

-- 4xx and 5xx carry the API's message.
SET doctrove_embed.api_base_url = 'http://127.0.0.1:18089/s=regress_errors/status=400/dim=4/v1';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
SET doctrove_embed.api_base_url = 'http://127.0.0.1:18089/s=regress_errors/status=503/dim=4/v1';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
SET doctrove_embed.api_base_url = 'http://127.0.0.1:18089/s=regress_errors/status=429/dim=4/v1';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE

-- Too slow.
SET doctrove_embed.api_base_url = 'http://127.0.0.1:18089/s=regress_errors/latency=3000/dim=4/v1';
SET doctrove_embed.request_timeout_ms = 300;
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
RESET doctrove_embed.request_timeout_ms;

-- Answers that are not a valid embeddings response.
SET doctrove_embed.api_base_url = 'http://127.0.0.1:18089/s=regress_errors/body=garbage/dim=4/v1';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
SET doctrove_embed.api_base_url = 'http://127.0.0.1:18089/s=regress_errors/body=random/dim=4/v1';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE
SET doctrove_embed.api_base_url = 'http://127.0.0.1:18089/s=regress_errors/drop=1/dim=4/v1';
SELECT * FROM embed_pending(10);
\echo :LAST_ERROR_SQLSTATE

-- After all of that, no row was written.
SELECT * FROM embedded;
SELECT get_papers_needing_embeddings_count();
RESET doctrove_embed.api_base_url;
DROP VIEW embedded;
DROP TABLE doctrove_papers;
