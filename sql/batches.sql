-- Batches sent through the Batch API, and the papers each holds, for the embedding job whose
-- column they fill. A paper is in at most one open batch for a column (the primary key of
-- batch_papers), and while it is there the embed_pending(), workers and later submissions of
-- every job filling that column skip it. Both tables are data: pg_dump keeps them.
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
    collected_at timestamptz,
    -- The embedding job whose column its vectors go to (default: the doctrove_embed.* settings).
    job text NOT NULL DEFAULT 'default'
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
    -- The column the batch fills: claims are per column, whichever job fills it.
    embedding_column text NOT NULL,
    PRIMARY KEY (relid, embedding_column, paper_id)
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
       submitted_at, finished_at, collected_at, error,
       job
FROM doctrove_embed.batch_jobs;
