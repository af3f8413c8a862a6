-- Functions that spend money or change the database are not executable by PUBLIC, and the
-- API key is hidden from other roles.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE ROLE regress_reader LOGIN;
CREATE TABLE doctrove_papers (doctrove_paper_id int PRIMARY KEY, doctrove_title text,
    doctrove_abstract text, doctrove_embedding vector(4));
GRANT SELECT, UPDATE ON doctrove_papers TO regress_reader;
SELECT has_function_privilege('regress_reader', 'embed_pending(integer)', 'EXECUTE') AS embed_pending,
       has_function_privilege('regress_reader', 'doctrove_embed.create_pending_index()', 'EXECUTE') AS create_index,
       has_function_privilege('regress_reader', 'get_papers_needing_embeddings_count()', 'EXECUTE') AS count;
SET ROLE regress_reader;
-- Counting and reading the status are open to every role.
SELECT get_papers_needing_embeddings_count();
SELECT failed FROM doctrove_embed.status;
SELECT * FROM embed_pending(1);
\echo :LAST_ERROR_SQLSTATE
SHOW doctrove_embed.api_key;
\echo :LAST_ERROR_SQLSTATE
SELECT current_setting('doctrove_embed.api_key');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM pg_settings WHERE name = 'doctrove_embed.api_key';
SET doctrove_embed.api_base_url = 'http://127.0.0.1:9/v1';
\echo :LAST_ERROR_SQLSTATE
SET doctrove_embed.api_key = 'stolen';
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.retry_failed();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
-- Per-role and per-database values would be readable in pg_db_role_setting: refused.
ALTER ROLE regress_reader SET doctrove_embed.api_key = 'sk-per-role';
\echo :LAST_ERROR_SQLSTATE
ALTER DATABASE doctrove_regress SET doctrove_embed.api_key = 'sk-per-db';
\echo :LAST_ERROR_SQLSTATE
ALTER ROLE regress_reader RESET doctrove_embed.api_key;
SELECT count(*) AS stored FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%api_key%';
-- A grant gives a role the right to run batches.
GRANT EXECUTE ON FUNCTION embed_pending(integer) TO regress_reader;
SELECT has_function_privilege('regress_reader', 'embed_pending(integer)', 'EXECUTE') AS embed_pending;
DROP TABLE doctrove_papers;
REVOKE EXECUTE ON FUNCTION embed_pending(integer) FROM regress_reader;
DROP ROLE regress_reader;
