-- PUBLIC reads the status views and calls input_text(); every other function and the failures
-- table need an explicit grant, and the API key is hidden from other roles.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE ROLE regress_reader LOGIN;
CREATE TABLE doctrove_papers (doctrove_paper_id int PRIMARY KEY, doctrove_title text,
    doctrove_abstract text, doctrove_embedding vector(4));
GRANT SELECT, UPDATE ON doctrove_papers TO regress_reader;
SELECT has_function_privilege('regress_reader', 'embed_pending(integer)', 'EXECUTE') AS embed_pending,
       has_function_privilege('regress_reader', 'doctrove_embed.create_pending_index()', 'EXECUTE') AS create_index,
       has_function_privilege('regress_reader', 'get_papers_needing_embeddings_count()', 'EXECUTE') AS count,
       has_function_privilege('regress_reader', 'doctrove_embed.input_text(text, text)', 'EXECUTE') AS input_text,
       has_table_privilege('regress_reader', 'doctrove_embed.failures', 'SELECT') AS read_failures;
SET ROLE regress_reader;
-- The status views are open to every role; the failures (paper ids, API messages) are not.
SELECT failed FROM doctrove_embed.status;
SELECT count(*) FROM doctrove_embed.failures;
\echo :LAST_ERROR_SQLSTATE
SELECT get_papers_needing_embeddings_count();
\echo :LAST_ERROR_SQLSTATE
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
-- Per-role, per-database and per-function values would be readable in the catalogs: refused.
ALTER ROLE regress_reader SET doctrove_embed.api_key = 'sk-per-role';
\echo :LAST_ERROR_SQLSTATE
ALTER DATABASE doctrove_regress SET doctrove_embed.api_key = 'sk-per-db';
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION regress_keyed() RETURNS int LANGUAGE sql SET doctrove_embed.api_key = 'sk-per-function' AS 'SELECT 1';
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION regress_keyed() RETURNS int LANGUAGE sql AS 'SELECT 1';
ALTER FUNCTION regress_keyed() SET doctrove_embed.api_key = 'sk-per-function';
\echo :LAST_ERROR_SQLSTATE
ALTER FUNCTION regress_keyed() SET doctrove_embed.api_key FROM CURRENT;
\echo :LAST_ERROR_SQLSTATE
ALTER FUNCTION regress_keyed() RESET doctrove_embed.api_key;
ALTER ROLE regress_reader RESET doctrove_embed.api_key;
SELECT count(*) AS stored FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%api_key%';
SELECT count(*) AS stored FROM pg_proc WHERE array_to_string(proconfig, ',') LIKE '%api_key%';
DROP FUNCTION regress_keyed();
-- Grants give a role the right to run batches and count.
GRANT EXECUTE ON FUNCTION embed_pending(integer), get_papers_needing_embeddings_count() TO regress_reader;
SET ROLE regress_reader;
SELECT get_papers_needing_embeddings_count();
RESET ROLE;
DROP TABLE doctrove_papers;
REVOKE EXECUTE ON FUNCTION embed_pending(integer), get_papers_needing_embeddings_count() FROM regress_reader;
DROP ROLE regress_reader;
