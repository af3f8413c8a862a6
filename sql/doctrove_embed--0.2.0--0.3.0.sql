-- doctrove_embed 0.2.0 -> 0.3.0: the Batch API path (see CHANGELOG.md): submit_batches(),
-- collect_batches(), cancel_batches(), the batch_jobs and batch_papers tables, the batches view,
-- and the status view's batch columns. A fresh 0.3.0 install and an updated one are checked to
-- be the same (crates/doctrove_itest/tests/upgrade.rs).
\echo Use "ALTER EXTENSION doctrove_embed UPDATE TO '0.3.0'" to load this file. \quit

SET LOCAL search_path = pg_catalog, pg_temp;

CREATE FUNCTION doctrove_embed."submit_batches"(
	"max_papers" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS TABLE (
	"batches" INT,  /* i32 */
	"papers" bigint,  /* i64 */
	"tokens" bigint,  /* i64 */
	"adopted" INT,  /* i32 */
	"collected" INT  /* i32 */
)
PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'submit_batches_wrapper';

CREATE FUNCTION doctrove_embed."collect_batches"() RETURNS TABLE (
	"batches_collected" INT,  /* i32 */
	"batches_open" INT,  /* i32 */
	"papers_written" bigint,  /* i64 */
	"papers_failed" bigint,  /* i64 */
	"papers_released" bigint  /* i64 */
)
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'collect_batches_wrapper';

CREATE FUNCTION doctrove_embed."cancel_batches"() RETURNS INT /* i32 */
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cancel_batches_wrapper';

CREATE FUNCTION doctrove_embed."batch_snapshot"() RETURNS TABLE (
	"papers_in_batches" bigint,  /* i64 */
	"batch_tokens_used" bigint,  /* i64 */
	"live_cost_usd" double precision,  /* f64 */
	"batch_cost_usd" double precision  /* f64 */
)
STRICT PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'batch_snapshot_wrapper';

-- Batches sent through the Batch API, and the papers each holds. A paper is in at most one open
-- batch (the primary key of batch_papers), and while it is there embed_pending(), the workers
-- and later submissions skip it. Both tables are data: pg_dump keeps them.
CREATE TABLE doctrove_embed.batch_jobs (
    batch_id text PRIMARY KEY,
    relid regclass NOT NULL,
    submission_id text NOT NULL,
    input_file_id text,
    output_file_id text,
    error_file_id text,
    -- The API's status: validating, in_progress, finalizing, completed, expired, failed,
    -- cancelling or cancelled.
    status text NOT NULL,
    papers integer NOT NULL,
    tokens bigint NOT NULL,
    -- The model that makes its vectors (the one asked for in its requests); its writes name it.
    model text,
    requests_total integer NOT NULL DEFAULT 0,
    requests_completed integer NOT NULL DEFAULT 0,
    requests_failed integer NOT NULL DEFAULT 0,
    -- What collecting it did: vectors written, papers recorded in failures, papers released.
    papers_written integer NOT NULL DEFAULT 0,
    papers_failed integer NOT NULL DEFAULT 0,
    papers_released integer NOT NULL DEFAULT 0,
    -- Whether it was found on the API after a crash instead of recorded when it was created.
    adopted boolean NOT NULL DEFAULT false,
    -- Collections of this batch that failed in a row (its files unreadable, the API not knowing
    -- it); after a bound it is closed and its papers released.
    collect_failures integer NOT NULL DEFAULT 0,
    -- Whether its files were deleted from the API (after the collection committed), or given
    -- up on after a bound of failed deletions (counted here).
    files_deleted boolean NOT NULL DEFAULT false,
    delete_failures integer NOT NULL DEFAULT 0,
    error text,
    submitted_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    collected_at timestamptz
);
CREATE INDEX batch_jobs_open_idx ON doctrove_embed.batch_jobs (relid) WHERE collected_at IS NULL;
COMMENT ON TABLE doctrove_embed.batch_jobs IS 'Batches submitted to the Batch API';

CREATE TABLE doctrove_embed.batch_papers (
    relid regclass NOT NULL,
    paper_id text NOT NULL,
    batch_id text NOT NULL REFERENCES doctrove_embed.batch_jobs ON DELETE CASCADE,
    -- A hash of the text sent; a paper whose text changed since is not written. NULL for the
    -- papers of an adopted batch (their text was not seen here).
    text_hash bigint,
    PRIMARY KEY (relid, paper_id)
);
CREATE INDEX batch_papers_batch_idx ON doctrove_embed.batch_papers (batch_id);
COMMENT ON TABLE doctrove_embed.batch_papers IS 'Papers in open batches of the Batch API';

-- Every role that embeds reads the claims of the tables it may read (any column of), which the
-- pending selection skips, and nothing else: the ids of other tables' papers stay hidden.
ALTER TABLE doctrove_embed.batch_papers ENABLE ROW LEVEL SECURITY;
CREATE POLICY batch_papers_of_readable_tables ON doctrove_embed.batch_papers FOR SELECT
    USING (pg_catalog.has_any_column_privilege(relid, 'SELECT'));

SELECT pg_catalog.pg_extension_config_dump('doctrove_embed.batch_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('doctrove_embed.batch_papers', '');

-- One row per batch: where it stands and what it did.
CREATE VIEW doctrove_embed.batches AS
SELECT batch_id, relid AS table_name, status,
       requests_total, requests_completed, requests_failed,
       papers, tokens, papers_written, papers_failed, papers_released,
       collected_at IS NULL AS open,
       adopted,
       pg_catalog.date_trunc('second', pg_catalog.now() OPERATOR(pg_catalog.-) submitted_at) AS age,
       submitted_at, finished_at, collected_at, error
FROM doctrove_embed.batch_jobs;

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
       pg_catalog.round(b.batch_cost_usd::pg_catalog.numeric, 4) AS batch_cost_usd
FROM doctrove_embed.status_snapshot() CROSS JOIN doctrove_embed.batch_snapshot() AS b;

-- A backfill through the Batch API that commits each batch as it goes: CALL it (from psql or a
-- pg_cron job) rather than SELECT submit_batches(), and no paper stays locked while the other
-- batches' files go up, and a batch's claims are committed as soon as the batch exists. A
-- procedure that commits cannot carry SET search_path, so every name below is schema-qualified.
CREATE PROCEDURE doctrove_embed.submit_backfill(max_papers pg_catalog.int8 DEFAULT NULL)
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
        SELECT * INTO done FROM doctrove_embed.submit_batches(per_batch);
        COMMIT;
        EXIT WHEN done.batches OPERATOR(pg_catalog.=) 0;
        IF left_over IS NOT NULL THEN
            left_over := left_over OPERATOR(pg_catalog.-) done.papers;
        END IF;
    END LOOP;
END
$$;
REVOKE ALL ON PROCEDURE doctrove_embed.submit_backfill(pg_catalog.int8) FROM PUBLIC;

-- Only the new objects' privileges are set here: what users granted on the older ones stays.
REVOKE ALL ON FUNCTION doctrove_embed.submit_batches(pg_catalog.int8), doctrove_embed.collect_batches(),
    doctrove_embed.cancel_batches(), doctrove_embed.batch_snapshot() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION doctrove_embed.batch_snapshot() TO PUBLIC;
REVOKE ALL ON doctrove_embed.batch_jobs, doctrove_embed.batch_papers, doctrove_embed.batches FROM PUBLIC;
GRANT SELECT ON doctrove_embed.batch_papers TO PUBLIC;
