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
