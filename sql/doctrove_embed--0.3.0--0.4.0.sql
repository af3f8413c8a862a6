-- doctrove_embed 0.3.0 -> 0.4.0: embedding jobs (see CHANGELOG.md): the job_definitions,
-- job_grants and search_targets tables, create_job() and the functions beside it, the jobs view,
-- embed_pending() and get_papers_needing_embeddings_count() with a job name, the index functions
-- with a job name, failures kept per job, the installation's secret that seals each batch's
-- metadata, a text and a query format per job, search() with filters, hybrid_search(), the
-- query cache, and the workers view with each worker's database. A fresh 0.4.0 install and an
-- updated one are checked to be the same (crates/doctrove_itest/tests/upgrade.rs).
\echo Use "ALTER EXTENSION doctrove_embed UPDATE TO '0.4.0'" to load this file. \quit

SET LOCAL search_path = pg_catalog, pg_temp;

-- Failures are kept per job: the rows of 0.3.0 belong to the job default (the settings).
ALTER TABLE doctrove_embed.failures ADD COLUMN job text NOT NULL DEFAULT 'default';
ALTER TABLE doctrove_embed.failures DROP CONSTRAINT failures_pkey, ADD PRIMARY KEY (job, relid, paper_id);

CREATE FUNCTION @extschema@."embed_pending"(
	"batch" INT, /* i32 */
	"job" TEXT /* & str */
) RETURNS TABLE (
	"successful_embeddings" INT,  /* i32 */
	"failed_embeddings" INT,  /* i32 */
	"fetch_ms" double precision,  /* f64 */
	"api_ms" double precision,  /* f64 */
	"db_ms" double precision  /* f64 */
)
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'embed_pending_of_job_wrapper';

CREATE FUNCTION @extschema@."get_papers_needing_embeddings_count"(
	"job" TEXT /* & str */
) RETURNS bigint /* i64 */
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'get_papers_needing_embeddings_count_of_job_wrapper';

CREATE FUNCTION doctrove_embed."create_job"(
	"name" TEXT, /* & str */
	"table_name" TEXT, /* & str */
	"embedding_column" TEXT, /* & str */
	"model" TEXT, /* & str */
	"id_column" TEXT DEFAULT NULL, /* Option < & str > */
	"title_column" TEXT DEFAULT 'doctrove_title', /* & str */
	"abstract_column" TEXT DEFAULT 'doctrove_abstract', /* & str */
	"dimensions" INT DEFAULT 0, /* i32 */
	"model_version_column" TEXT DEFAULT '', /* & str */
	"updated_at_column" TEXT DEFAULT '', /* & str */
	"batch_size" INT DEFAULT 250, /* i32 */
	"weight" INT DEFAULT 1, /* i32 */
	"use_batch_api" bool DEFAULT false, /* bool */
	"enabled" bool DEFAULT true, /* bool */
	"endpoints" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Vec < String > > */
	"text_format" TEXT DEFAULT NULL, /* Option < & str > */
	"query_format" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TEXT /* String */
PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_job_wrapper';

CREATE FUNCTION doctrove_embed."alter_job"(
	"name" TEXT, /* & str */
	"embedding_column" TEXT DEFAULT NULL, /* Option < & str > */
	"model" TEXT DEFAULT NULL, /* Option < & str > */
	"id_column" TEXT DEFAULT NULL, /* Option < & str > */
	"title_column" TEXT DEFAULT NULL, /* Option < & str > */
	"abstract_column" TEXT DEFAULT NULL, /* Option < & str > */
	"dimensions" INT DEFAULT NULL, /* Option < i32 > */
	"model_version_column" TEXT DEFAULT NULL, /* Option < & str > */
	"updated_at_column" TEXT DEFAULT NULL, /* Option < & str > */
	"batch_size" INT DEFAULT NULL, /* Option < i32 > */
	"weight" INT DEFAULT NULL, /* Option < i32 > */
	"use_batch_api" bool DEFAULT NULL, /* Option < bool > */
	"enabled" bool DEFAULT NULL, /* Option < bool > */
	"endpoints" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Vec < String > > */
	"text_format" TEXT DEFAULT NULL, /* Option < & str > */
	"query_format" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TEXT /* String */
PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'alter_job_wrapper';

-- The text a job with a given text format sends for a paper.
CREATE FUNCTION doctrove_embed."input_text"(
	"title" TEXT, /* Option < & str > */
	"abstract_text" TEXT, /* Option < & str > */
	"format" TEXT /* Option < & str > */
) RETURNS TEXT /* Option < String > */
IMMUTABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'input_text_in_format_wrapper';

CREATE FUNCTION doctrove_embed."drop_job"(
	"name" TEXT /* & str */
) RETURNS bool /* bool */
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'drop_job_wrapper';

CREATE FUNCTION doctrove_embed."pause_job"(
	"name" TEXT /* & str */
) RETURNS bool /* bool */
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pause_job_wrapper';

CREATE FUNCTION doctrove_embed."resume_job"(
	"name" TEXT /* & str */
) RETURNS bool /* bool */
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'resume_job_wrapper';

CREATE FUNCTION doctrove_embed."grant_job"(
	"name" TEXT, /* & str */
	"role" TEXT /* & str */
) RETURNS bool /* bool */
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'grant_job_wrapper';

CREATE FUNCTION doctrove_embed."revoke_job"(
	"name" TEXT, /* & str */
	"role" TEXT /* & str */
) RETURNS bool /* bool */
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'revoke_job_wrapper';

CREATE FUNCTION doctrove_embed."job_snapshot"() RETURNS TABLE (
	"name" TEXT,  /* String */
	"table_name" TEXT,  /* String */
	"embedding_column" TEXT,  /* String */
	"model" TEXT,  /* String */
	"dimensions" INT,  /* i32 */
	"enabled" bool,  /* bool */
	"weight" INT,  /* i32 */
	"batch_size" INT,  /* i32 */
	"pending" bigint,  /* Option < i64 > */
	"pending_counted_at" double precision,  /* Option < f64 > */
	"embedded" bigint,  /* i64 */
	"failed" bigint,  /* i64 */
	"papers_per_min" double precision,  /* f64 */
	"eta_seconds" double precision,  /* Option < f64 > */
	"tokens_used" bigint,  /* i64 */
	"batch_tokens_used" bigint,  /* i64 */
	"cost_usd" double precision,  /* f64 */
	"last_error" TEXT,  /* Option < String > */
	"last_error_at" double precision,  /* Option < f64 > */
	"endpoints" TEXT  /* Option < String > */
)
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'job_snapshot_wrapper';

CREATE FUNCTION doctrove_embed."use_job_for_search"(
	"name" TEXT /* & str */
) RETURNS TEXT /* String */
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'use_job_for_search_wrapper';

CREATE FUNCTION doctrove_embed."create_pending_index"(
	"job" TEXT /* & str */
) RETURNS TEXT /* String */
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_pending_index_of_job_wrapper';

CREATE FUNCTION doctrove_embed."pending_index_command"(
	"job" TEXT /* & str */
) RETURNS TEXT /* String */
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pending_index_command_of_job_wrapper';

CREATE FUNCTION doctrove_embed."create_hnsw_index"(
	"job" TEXT /* & str */
) RETURNS TEXT /* String */
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_hnsw_index_of_job_wrapper';

CREATE FUNCTION doctrove_embed."watch"(
	"job" TEXT /* & str */
) RETURNS TEXT /* String */
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'watch_job_wrapper';

CREATE FUNCTION doctrove_embed."unwatch"(
	"job" TEXT /* & str */
) RETURNS TEXT /* String */
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'unwatch_job_wrapper';

-- Embedding jobs: which table's column a job fills, from which columns' text, with which model.
-- Rows are written only by doctrove_embed.create_job() and the functions beside it, which let
-- only the table's owner (a member of the owning role) or a superuser define a job; a job's
-- statements run as the table's owner whoever runs it, so no role gets more from a job than the
-- owner chose to give. PUBLIC has no right on either table: doctrove_embed.jobs shows each role
-- the jobs it may run. Both are data: pg_dump keeps them.
CREATE TABLE doctrove_embed.job_definitions (
    name text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{0,62}$'),
    relid regclass NOT NULL,
    id_column name NOT NULL,
    title_column name NOT NULL,
    abstract_column name NOT NULL DEFAULT '',
    embedding_column name NOT NULL,
    model text NOT NULL CHECK (model <> '' AND length(model) <= 200),
    dimensions integer NOT NULL DEFAULT 0 CHECK (dimensions BETWEEN 0 AND 16000),
    model_version_column name NOT NULL DEFAULT '',
    updated_at_column name NOT NULL DEFAULT '',
    batch_size integer NOT NULL DEFAULT 250 CHECK (batch_size BETWEEN 1 AND 100000),
    weight integer NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),
    use_batch_api boolean NOT NULL DEFAULT false,
    enabled boolean NOT NULL DEFAULT true,
    created_by name NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The table's owner when the job was defined (or last resumed by its owner): a job whose
    -- table has changed hands does not run until its new owner resumes it.
    owner regrole NOT NULL,
    -- Where its requests go: endpoints of the server's configuration, by name (default: the
    -- doctrove_embed.api_base_url settings; the others from doctrove_embed.endpoints_file).
    endpoints text[] NOT NULL DEFAULT '{default}' CHECK (cardinality(endpoints) BETWEEN 1 AND 8),
    -- How the title and abstract make the text sent (NULL: 'Title: {title}[ Abstract: {abstract}]').
    text_format text CHECK (length(text_format) BETWEEN 1 AND 1000),
    -- How a search's text is put before it is embedded (NULL: the doctrove_embed.query_format setting).
    query_format text CHECK (length(query_format) BETWEEN 1 AND 1000),
    UNIQUE (relid, embedding_column)
);
COMMENT ON TABLE doctrove_embed.job_definitions IS 'Embedding jobs: a table''s column, its text and its model';
SELECT pg_catalog.pg_extension_config_dump('doctrove_embed.job_definitions', '');

-- Roles a job is granted to (doctrove_embed.grant_job): a member of one may run the job.
CREATE TABLE doctrove_embed.job_grants (
    job text NOT NULL REFERENCES doctrove_embed.job_definitions (name) ON DELETE CASCADE,
    grantee regrole NOT NULL,
    -- The role's name when granted: a later role given the OID of a dropped one gets nothing.
    grantee_name name NOT NULL,
    granted_by name NOT NULL,
    PRIMARY KEY (job, grantee)
);
COMMENT ON TABLE doctrove_embed.job_grants IS 'Roles each embedding job is granted to';
SELECT pg_catalog.pg_extension_config_dump('doctrove_embed.job_grants', '');

-- A dropped table's jobs go with it: a later table given the same OID must never inherit a job,
-- or the roles it was granted to.
CREATE FUNCTION doctrove_embed.forget_jobs_of_dropped_tables() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dropped pg_catalog.oid[] := ARRAY(
        SELECT objid FROM pg_catalog.pg_event_trigger_dropped_objects()
        WHERE classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass AND objsubid OPERATOR(pg_catalog.=) 0);
BEGIN
    DELETE FROM doctrove_embed.failures WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) ANY (dropped);
    DELETE FROM doctrove_embed.job_definitions WHERE relid::pg_catalog.oid OPERATOR(pg_catalog.=) ANY (dropped);
END
$$;
CREATE EVENT TRIGGER doctrove_embed_forget_jobs ON sql_drop
    EXECUTE FUNCTION doctrove_embed.forget_jobs_of_dropped_tables();

-- Which job's column search() and similar_papers() read for a table, chosen by its owner with
-- doctrove_embed.use_job_for_search(); a table without a row is searched through the job
-- default (the settings). One row per table, switched in one statement: a search reads the old
-- job's column or the new one's, never both. Data: pg_dump keeps it.
CREATE TABLE doctrove_embed.search_targets (
    relid regclass PRIMARY KEY,
    job text NOT NULL REFERENCES doctrove_embed.job_definitions (name) ON DELETE CASCADE,
    switched_by name NOT NULL,
    switched_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE doctrove_embed.search_targets IS 'The job whose column each table is searched through';
SELECT pg_catalog.pg_extension_config_dump('doctrove_embed.search_targets', '');

-- This installation's secret: it seals the metadata of each batch this database submits, so a
-- batch found on the API is adopted only when this installation made it (anyone holding the API
-- key can copy a batch's metadata, but not its seal). Readable by the extension's owner alone,
-- and not dumped: a copy restored elsewhere makes its own when the extension is created there.
CREATE TABLE doctrove_embed.installation (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    secret text NOT NULL
);
INSERT INTO doctrove_embed.installation (secret)
    SELECT pg_catalog.gen_random_uuid()::pg_catalog.text OPERATOR(pg_catalog.||) pg_catalog.gen_random_uuid()::pg_catalog.text;

-- Each job the caller may run, with its progress since the server started (from shared memory:
-- no count of the table on read).
CREATE VIEW doctrove_embed.jobs AS
SELECT name, table_name, embedding_column, model, dimensions, enabled, weight, batch_size,
       pending,
       pg_catalog.to_timestamp(pending_counted_at) AS pending_counted_at,
       embedded,
       failed,
       pg_catalog.round(papers_per_min::pg_catalog.numeric, 1) AS papers_per_min,
       pg_catalog.make_interval(secs => pg_catalog.round(eta_seconds)) AS eta,
       tokens_used,
       batch_tokens_used,
       pg_catalog.round(cost_usd::pg_catalog.numeric, 4) AS cost_usd,
       last_error,
       pg_catalog.to_timestamp(last_error_at) AS last_error_at,
       endpoints
FROM doctrove_embed.job_snapshot();

-- Batches belong to an embedding job: the ones of 0.3.0 to the job default (the settings).
-- Claims are per column: a paper may be in an open batch for each column of its table. The
-- claims of 0.3.0 are the settings' column's.
ALTER TABLE doctrove_embed.batch_jobs ADD COLUMN job text NOT NULL DEFAULT 'default';
ALTER TABLE doctrove_embed.batch_papers ADD COLUMN embedding_column text;
UPDATE doctrove_embed.batch_papers
    SET embedding_column = COALESCE(pg_catalog.current_setting('doctrove_embed.embedding_column', true), 'doctrove_embedding');
ALTER TABLE doctrove_embed.batch_papers ALTER COLUMN embedding_column SET NOT NULL,
    DROP CONSTRAINT batch_papers_pkey, ADD PRIMARY KEY (relid, embedding_column, paper_id);
CREATE OR REPLACE VIEW doctrove_embed.batches AS
SELECT batch_id, relid AS table_name, status,
       requests_total, requests_completed, requests_failed,
       papers, tokens, papers_written, papers_failed, papers_released,
       collected_at IS NULL AS open,
       adopted,
       pg_catalog.date_trunc('second', pg_catalog.now() OPERATOR(pg_catalog.-) submitted_at) AS age,
       submitted_at, finished_at, collected_at, error,
       job
FROM doctrove_embed.batch_jobs;

-- search() with a threshold, a filter, the columns asked for and a job. Not PUBLIC's, as
-- search(text, integer) is not: a superuser grants it to the roles that search (a grant made by
-- this script would count as the extension's own, and pg_dump would leave it out).
CREATE FUNCTION doctrove_embed."search"(
	"query" TEXT, /* Option < & str > */
	"k" INT, /* Option < i32 > */
	"min_similarity" double precision, /* Option < f64 > */
	"filter" jsonb DEFAULT NULL, /* Option < JsonB > */
	"columns" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Vec < String > > */
	"job" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"paper_id" TEXT,  /* String */
	"title" TEXT,  /* Option < String > */
	"distance" double precision,  /* f64 */
	"similarity" double precision,  /* f64 */
	"data" jsonb  /* Option < JsonB > */
)
PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'search_filtered_wrapper';
REVOKE ALL ON FUNCTION doctrove_embed.search(text, integer, double precision, jsonb, text[], text) FROM PUBLIC;

-- The query embeddings cache's hits and misses, at the end of the status view.
CREATE FUNCTION doctrove_embed."query_cache_snapshot"() RETURNS TABLE (
	"hits" bigint,  /* i64 */
	"misses" bigint,  /* i64 */
	"entries" INT  /* i32 */
)
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'query_cache_snapshot_wrapper';
CREATE OR REPLACE VIEW doctrove_embed.status AS
SELECT pending,
       pg_catalog.to_timestamp(pending_counted_at) AS pending_counted_at,
       embedded,
       (SELECT pg_catalog.count(*) FROM doctrove_embed.failures) AS failed,
       failed_since_start,
       pg_catalog.round(papers_per_min_1m::pg_catalog.numeric, 1) AS papers_per_min_1m,
       pg_catalog.round(papers_per_min_10m::pg_catalog.numeric, 1) AS papers_per_min_10m,
       pg_catalog.make_interval(secs => pg_catalog.round(eta_seconds)) AS eta,
       tokens_used,
       workers_running,
       workers_configured,
       enabled,
       hnsw_index,
       b.papers_in_batches,
       b.batch_tokens_used,
       pg_catalog.round(b.live_cost_usd::pg_catalog.numeric, 4) AS live_cost_usd,
       pg_catalog.round(b.batch_cost_usd::pg_catalog.numeric, 4) AS batch_cost_usd,
       q.hits AS query_cache_hits,
       q.misses AS query_cache_misses
FROM doctrove_embed.status_snapshot() CROSS JOIN doctrove_embed.batch_snapshot() AS b
CROSS JOIN doctrove_embed.query_cache_snapshot() AS q;

-- Hybrid search (vector and full text ranking fused by reciprocal rank) and the GIN index its
-- text ranking reads. Not PUBLIC's, as search() is not.
CREATE FUNCTION doctrove_embed."hybrid_search"(
	"query" TEXT, /* Option < & str > */
	"k" INT DEFAULT 10, /* i32 */
	"filter" jsonb DEFAULT NULL, /* Option < JsonB > */
	"vector_weight" double precision DEFAULT 1.0, /* f64 */
	"text_weight" double precision DEFAULT 1.0, /* f64 */
	"rrf_k" INT DEFAULT 60, /* i32 */
	"candidates" INT DEFAULT NULL, /* Option < i32 > */
	"job" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"paper_id" TEXT,  /* String */
	"title" TEXT,  /* Option < String > */
	"score" double precision,  /* f64 */
	"vector_rank" bigint,  /* Option < i64 > */
	"text_rank" bigint,  /* Option < i64 > */
	"similarity" double precision  /* Option < f64 > */
)
PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'hybrid_search_wrapper';

CREATE FUNCTION doctrove_embed."create_text_index"(
	"job" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TEXT /* String */
PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'create_text_index_wrapper';

CREATE FUNCTION doctrove_embed."text_index_command"(
	"job" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TEXT /* String */
PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'text_index_command_wrapper';
REVOKE ALL ON FUNCTION doctrove_embed.hybrid_search(text, integer, jsonb, double precision, double precision, integer, integer, text),
    doctrove_embed.create_text_index(text), doctrove_embed.text_index_command(text) FROM PUBLIC;

-- The Batch API functions with a job name.
CREATE FUNCTION doctrove_embed."submit_batches"(
	"max_papers" bigint, /* Option < i64 > */
	"job" TEXT /* Option < & str > */
) RETURNS TABLE (
	"batches" INT,  /* i32 */
	"papers" bigint,  /* i64 */
	"tokens" bigint,  /* i64 */
	"adopted" INT,  /* i32 */
	"collected" INT  /* i32 */
)
PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'submit_batches_of_job_wrapper';

CREATE FUNCTION doctrove_embed."collect_batches"(
	"job" TEXT /* Option < & str > */
) RETURNS TABLE (
	"batches_collected" INT,  /* i32 */
	"batches_open" INT,  /* i32 */
	"papers_written" bigint,  /* i64 */
	"papers_failed" bigint,  /* i64 */
	"papers_released" bigint  /* i64 */
)
PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'collect_batches_of_job_wrapper';

CREATE FUNCTION doctrove_embed."cancel_batches"(
	"job" TEXT /* Option < & str > */
) RETURNS INT /* i32 */
PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cancel_batches_of_job_wrapper';

CREATE FUNCTION doctrove_embed."retry_failed"(
	"job" TEXT /* Option < & str > */
) RETURNS bigint /* i64 */
PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'retry_failed_of_job_wrapper';

-- The backfill of one job, and the backfill of the job default through it.
CREATE OR REPLACE PROCEDURE doctrove_embed.submit_backfill(max_papers pg_catalog.int8 DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    CALL doctrove_embed.submit_backfill(max_papers, 'default');
END
$$;
-- The backfill of job `job` (submit_batches(max_papers, job) checks the caller's right to run
-- it; the job default needs the right to run submit_batches(bigint)).
CREATE PROCEDURE doctrove_embed.submit_backfill(max_papers pg_catalog.int8, job pg_catalog.text)
LANGUAGE plpgsql AS $$
DECLARE
    per_batch pg_catalog.int8;
    left_over pg_catalog.int8 := max_papers;
    done record;
BEGIN
    LOOP
        per_batch := pg_catalog.current_setting('doctrove_embed.batch_api_max_papers')::pg_catalog.int8;
        IF left_over IS NOT NULL THEN
            per_batch := pg_catalog.int8smaller(per_batch, left_over);
        END IF;
        EXIT WHEN per_batch OPERATOR(pg_catalog.<=) 0;
        SELECT * INTO done FROM doctrove_embed.submit_batches(per_batch, job);
        COMMIT;
        EXIT WHEN done.batches OPERATOR(pg_catalog.=) 0;
        IF left_over IS NOT NULL THEN
            left_over := left_over OPERATOR(pg_catalog.-) done.papers;
        END IF;
    END LOOP;
END
$$;

-- The workers view shows the database each worker serves (the launcher starts workers in every
-- database where the extension is installed).
DROP VIEW doctrove_embed.workers;
DROP FUNCTION doctrove_embed.worker_snapshot();
CREATE FUNCTION doctrove_embed."worker_snapshot"() RETURNS TABLE (
	"worker" INT,  /* i32 */
	"pid" INT,  /* i32 */
	"database_oid" oid,  /* Option < pg_sys :: Oid > */
	"state" TEXT,  /* String */
	"batches" bigint,  /* i64 */
	"papers_embedded" bigint,  /* i64 */
	"failures" bigint,  /* i64 */
	"last_error" TEXT,  /* Option < String > */
	"last_batch_at" double precision  /* Option < f64 > */
)
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'worker_snapshot_wrapper';
-- One row per background worker, with the database it serves.
CREATE VIEW doctrove_embed.workers AS
SELECT w.worker, w.pid, d.datname AS database, w.state, w.batches, w.papers_embedded, w.failures, w.last_error,
       pg_catalog.to_timestamp(w.last_batch_at) AS last_batch_at
FROM doctrove_embed.worker_snapshot() AS w
LEFT JOIN pg_catalog.pg_database AS d ON d.oid OPERATOR(pg_catalog.=) w.database_oid;

-- The new objects' rights, as privileges.sql gives them in a fresh install (only these: a REVOKE
-- on every table would record the grants roles hold today as the extension's own).
REVOKE ALL ON FUNCTION doctrove_embed.job_snapshot(),
    doctrove_embed.create_job(text, text, text, text, text, text, text, integer, text, text, integer, integer, boolean, boolean, text[], text, text),
    doctrove_embed.alter_job(text, text, text, text, text, text, integer, text, text, integer, integer, boolean, boolean, text[], text, text),
    doctrove_embed.drop_job(text), doctrove_embed.pause_job(text), doctrove_embed.resume_job(text),
    doctrove_embed.grant_job(text, text), doctrove_embed.revoke_job(text, text),
    doctrove_embed.forget_jobs_of_dropped_tables(), doctrove_embed.use_job_for_search(text),
    doctrove_embed.create_pending_index(text), doctrove_embed.pending_index_command(text),
    doctrove_embed.create_hnsw_index(text), doctrove_embed.watch(text), doctrove_embed.unwatch(text),
    doctrove_embed.retry_failed(text) FROM PUBLIC;
REVOKE ALL ON TABLE doctrove_embed.job_definitions, doctrove_embed.job_grants, doctrove_embed.search_targets,
    doctrove_embed.installation, doctrove_embed.jobs FROM PUBLIC;
REVOKE ALL ON FUNCTION doctrove_embed.worker_snapshot(), doctrove_embed.input_text(text, text, text),
    doctrove_embed.query_cache_snapshot(),
    doctrove_embed.submit_batches(bigint, text), doctrove_embed.collect_batches(text), doctrove_embed.cancel_batches(text)
    FROM PUBLIC;
GRANT SELECT ON doctrove_embed.workers TO PUBLIC;
GRANT EXECUTE ON FUNCTION doctrove_embed.worker_snapshot(), doctrove_embed.input_text(text, text, text),
    doctrove_embed.query_cache_snapshot(),
    doctrove_embed.submit_batches(bigint, text), doctrove_embed.collect_batches(text), doctrove_embed.cancel_batches(text)
    TO PUBLIC;
GRANT EXECUTE ON PROCEDURE doctrove_embed.submit_backfill(bigint, text) TO PUBLIC;
-- The watch triggers' functions, for a table's owner to attach them (privileges.sql).
GRANT EXECUTE ON FUNCTION doctrove_embed.wake_workers(), doctrove_embed.reset_embedding() TO PUBLIC;

-- Jobs: each function checks the caller itself. Only a table's owner (or a superuser) changes,
-- grants or drops a job on it; a job runs for the roles it is granted to; the view shows each
-- role the jobs it may run. Defining a job spends the server's API key (the workers run every
-- job), so create_job() is granted explicitly, as embed_pending() is. Running the job default
-- (the settings) through the forms that take a job name needs the right to run the forms
-- without one.
GRANT SELECT ON doctrove_embed.jobs TO PUBLIC;
GRANT EXECUTE ON FUNCTION doctrove_embed.job_snapshot(),
    doctrove_embed.alter_job(text, text, text, text, text, text, integer, text, text, integer, integer, boolean, boolean, text[], text, text),
    doctrove_embed.drop_job(text), doctrove_embed.pause_job(text), doctrove_embed.resume_job(text),
    doctrove_embed.grant_job(text, text), doctrove_embed.revoke_job(text, text),
    doctrove_embed.use_job_for_search(text), doctrove_embed.create_pending_index(text),
    doctrove_embed.pending_index_command(text), doctrove_embed.create_hnsw_index(text),
    doctrove_embed.watch(text), doctrove_embed.unwatch(text), doctrove_embed.retry_failed(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.embed_pending(integer, text),
    @extschema@.get_papers_needing_embeddings_count(text) TO PUBLIC;
