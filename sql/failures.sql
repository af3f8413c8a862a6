-- Papers the API rejected for their input. A paper here is not selected again for
-- doctrove_embed.failed_retry_delay_ms after each attempt, nor at all once it reaches
-- doctrove_embed.max_attempts; doctrove_embed.retry_failed(job) clears a job's rows (without a
-- name, the job default's), and a paper embedded later loses its row.
CREATE TABLE doctrove_embed.failures (
    relid regclass NOT NULL,
    paper_id text NOT NULL,
    attempts integer NOT NULL DEFAULT 1,
    last_error text,
    first_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- The job the paper failed in (doctrove_embed.job_definitions; 'default' for the settings):
    -- a text one model refuses may suit another.
    job text NOT NULL DEFAULT 'default',
    PRIMARY KEY (job, relid, paper_id)
);
COMMENT ON TABLE doctrove_embed.failures IS 'Papers the embeddings API rejected, per table';
-- Rows are data: pg_dump keeps them.
SELECT pg_catalog.pg_extension_config_dump('doctrove_embed.failures', '');
