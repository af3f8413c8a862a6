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
