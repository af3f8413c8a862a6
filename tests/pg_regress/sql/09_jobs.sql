-- Embedding jobs: what a definition is checked for, who may define, change, grant and run a
-- job, and what each role sees of them. Errors carry their SQLSTATE.
\set VERBOSITY default
\set SHOW_CONTEXT never
\set mock `echo "$DOCTROVE_TEST_MOCK"`
CREATE ROLE regress_job_owner;
CREATE ROLE regress_job_runner;
CREATE ROLE regress_job_stranger;
CREATE TABLE job_papers (paper_id bigint PRIMARY KEY, doctrove_title text, doctrove_abstract text,
    doctrove_embedding vector(4), small_embedding vector(4), made_by text, tags text[]);
ALTER TABLE job_papers OWNER TO regress_job_owner;
INSERT INTO job_papers (paper_id, doctrove_title, doctrove_abstract) VALUES
    (1, 'Deep Residual Learning', 'We present a residual learning framework.'),
    (2, 'Attention Is All You Need', NULL);
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_jobs/dim=4/v1', false) IS NOT NULL AS pointed;

-- Defining a job spends the API key: create_job() is granted explicitly.
SET ROLE regress_job_stranger;
SELECT doctrove_embed.create_job('small', 'job_papers', 'small_embedding', 'small-model');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
GRANT EXECUTE ON FUNCTION doctrove_embed.create_job(text, text, text, text, text, text, text, integer, text, text, integer, integer, boolean, boolean, text[], text, text) TO regress_job_owner, regress_job_stranger;
-- Only the table's owner (or a superuser) defines a job on it.
SET ROLE regress_job_stranger;
SELECT doctrove_embed.create_job('small', 'job_papers', 'small_embedding', 'small-model');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_job_owner;
-- Definitions are checked against the table before they are recorded.
SELECT doctrove_embed.create_job('Small', 'job_papers', 'small_embedding', 'small-model');
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.create_job('default', 'job_papers', 'small_embedding', 'small-model');
\echo :LAST_ERROR_SQLSTATE
CREATE TEMPORARY TABLE job_temp (paper_id bigint PRIMARY KEY, doctrove_title text, e vector(4));
SELECT doctrove_embed.create_job('temp', 'job_temp', 'e', 'small-model');
\echo :LAST_ERROR_SQLSTATE
DROP TABLE job_temp;
SELECT doctrove_embed.create_job('small', 'no_such_table', 'small_embedding', 'small-model');
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.create_job('small', 'job_papers', 'no_such_column', 'small-model');
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.create_job('small', 'job_papers', 'tags', 'small-model');
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.create_job('small', 'job_papers', 'small_embedding', 'small-model', dimensions => 8);
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.create_job('small', 'job_papers', 'small_embedding', '');
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.create_job('small', 'job_papers', 'small_embedding', 'small-model', weight => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.create_job('small', 'job_papers', 'small_embedding', 'small-model', batch_size => 0);
\echo :LAST_ERROR_SQLSTATE
-- The Batch API with a job name needs a job: NULL is no job (not the settings').
SELECT * FROM doctrove_embed.submit_batches(1, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM doctrove_embed.collect_batches(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM doctrove_embed.cancel_batches(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.create_job('small', 'job_papers', 'small_embedding', 'small-model', model_version_column => 'made_by');
-- A text format names {title} and {abstract} only; the reason is given.
SELECT doctrove_embed.create_job('bad_format', 'job_papers', 'small_embedding', 'small-model', text_format => 'passage: {body}');
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.create_job('bad_format', 'job_papers', 'small_embedding', 'small-model', text_format => 'passage: [{title}');
\echo :LAST_ERROR_SQLSTATE
-- A query format names {query}, and nothing else.
SELECT doctrove_embed.create_job('bad_format', 'job_papers', 'small_embedding', 'small-model', query_format => 'query:');
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.create_job('bad_format', 'job_papers', 'small_embedding', 'small-model', query_format => 'query: {title}');
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.input_text('A', NULL, 'Title: {title}[ Abstract: {abstract}]'), doctrove_embed.input_text('A', 'B', 'passage: {title}[. {abstract}]');
-- One job per name, and one job per column.
SELECT doctrove_embed.create_job('small', 'job_papers', 'doctrove_embedding', 'other-model');
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.create_job('small_again', 'job_papers', 'small_embedding', 'other-model');
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.grant_job('small', 'regress_no_such_role');
\echo :LAST_ERROR_SQLSTATE
SELECT doctrove_embed.grant_job('small', 'regress_job_runner');
SELECT name, table_name, embedding_column, model, dimensions, enabled, weight, batch_size FROM doctrove_embed.jobs;

-- A role the job is not granted to is refused before any request; a granted one runs it as the
-- table's owner (it has no right on the table itself).
SET ROLE regress_job_stranger;
SELECT * FROM embed_pending(10, 'small');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS jobs_seen FROM doctrove_embed.jobs;
SELECT * FROM embed_pending(10, 'no_such_job');
\echo :LAST_ERROR_SQLSTATE
-- The job default (the settings) through the form with a job name needs the right to run the
-- form without one.
SELECT * FROM embed_pending(10, 'default');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_job_runner;
SELECT doctrove_embed.alter_job('small', model => 'runner-model');
\echo :LAST_ERROR_SQLSTATE
SELECT get_papers_needing_embeddings_count('small');
SELECT successful_embeddings, failed_embeddings FROM embed_pending(10, 'small');
SELECT count(*) AS jobs_seen FROM doctrove_embed.jobs;
RESET ROLE;
SELECT paper_id, small_embedding IS NOT NULL AS embedded, made_by, doctrove_embedding IS NULL AS default_untouched
FROM job_papers ORDER BY paper_id;
SELECT name, embedded, failed, pending FROM doctrove_embed.jobs;

-- A session with temporary tables does not run a job as the owner.
SET ROLE regress_job_runner;
CREATE TEMPORARY TABLE audit_log (what text);
SELECT * FROM embed_pending(10, 'small');
\echo :LAST_ERROR_SQLSTATE
DISCARD TEMP;
RESET ROLE;
-- A table that changes hands stops its jobs until the new owner resumes them, dropping the
-- grants its previous owner made.
ALTER TABLE job_papers OWNER TO regress_job_stranger;
SET ROLE regress_job_runner;
SELECT * FROM embed_pending(10, 'small');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_job_owner;
SELECT doctrove_embed.resume_job('small');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_job_stranger;
SELECT doctrove_embed.resume_job('small');
SELECT count(*) AS jobs_seen_by_the_new_owner FROM doctrove_embed.jobs;
RESET ROLE;
SELECT grantee_name FROM doctrove_embed.job_grants;
ALTER TABLE job_papers OWNER TO regress_job_owner;
SET ROLE regress_job_owner;
SELECT doctrove_embed.resume_job('small');
SELECT doctrove_embed.grant_job('small', 'regress_job_runner');
RESET ROLE;
-- A paused job is refused (55000); its owner changes and resumes it.
SET ROLE regress_job_owner;
SELECT doctrove_embed.pause_job('small');
SET ROLE regress_job_runner;
SELECT * FROM embed_pending(10, 'small');
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_job_owner;
SELECT doctrove_embed.alter_job('small', batch_size => 100, weight => 5, enabled => true);
SELECT doctrove_embed.alter_job('small', embedding_column => 'doctrove_embedding', title_column => 'no_such_column');
\echo :LAST_ERROR_SQLSTATE
SELECT name, enabled, weight, batch_size FROM doctrove_embed.jobs;
SELECT doctrove_embed.revoke_job('small', 'regress_job_runner');
SELECT doctrove_embed.drop_job('small');
RESET ROLE;
SELECT count(*) AS jobs_left FROM doctrove_embed.job_definitions;
-- PUBLIC reads neither table behind the view.
SET ROLE regress_job_stranger;
SELECT count(*) FROM doctrove_embed.job_definitions;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM doctrove_embed.job_grants;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
RESET doctrove_embed.api_base_url;
DROP TABLE job_papers;
REVOKE EXECUTE ON FUNCTION doctrove_embed.create_job(text, text, text, text, text, text, text, integer, text, text, integer, integer, boolean, boolean, text[], text, text) FROM regress_job_owner, regress_job_stranger;
DROP ROLE regress_job_owner, regress_job_runner, regress_job_stranger;
-- The id column defaults to the primary key, which must be a single column.
CREATE TABLE job_no_key (a int, b int, doctrove_title text, e vector(4));
SELECT doctrove_embed.create_job('no_key', 'job_no_key', 'e', 'm');
\echo :LAST_ERROR_SQLSTATE
DROP TABLE job_no_key;
-- Searches switch only to a job that is complete and indexed.
SELECT doctrove_embed.use_job_for_search('no_such_job');
\echo :LAST_ERROR_SQLSTATE
