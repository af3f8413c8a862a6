-- doctrove_embed 0.1.0 -> 0.2.0: the catalog changes of 0.2.0 (see CHANGELOG.md). The library
-- is replaced by `make install` before this script runs; the C functions keep their names and
-- signatures, so only SQL-level objects change here. A fresh 0.2.0 install and an upgraded 0.1.0
-- are checked to be the same (crates/itest/tests/upgrade.rs).
\echo Use "ALTER EXTENSION doctrove_embed UPDATE TO '0.2.0'" to load this file. \quit

-- The row trigger function carries its own search_path and names pg_catalog's functions.
CREATE OR REPLACE FUNCTION doctrove_embed.reset_embedding() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW := pg_catalog.jsonb_populate_record(NEW, pg_catalog.jsonb_build_object(TG_ARGV[0], NULL));
    RETURN NEW;
END
$$;
ALTER FUNCTION doctrove_embed.wake_workers() SET search_path = pg_catalog, pg_temp;

-- The views name pg_catalog's functions, so no object on a caller's search_path runs in them.
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
       hnsw_index
FROM doctrove_embed.status_snapshot();

CREATE OR REPLACE VIEW doctrove_embed.workers AS
SELECT worker, pid, state, batches, papers_embedded, failures, last_error,
       pg_catalog.to_timestamp(last_batch_at) AS last_batch_at
FROM doctrove_embed.worker_snapshot();

-- PUBLIC keeps the two views and input_text(); grants made to roles are left as they are.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA doctrove_embed FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.embed_pending(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.get_papers_needing_embeddings_count() FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA doctrove_embed FROM PUBLIC;
GRANT SELECT ON doctrove_embed.status, doctrove_embed.workers TO PUBLIC;
GRANT EXECUTE ON FUNCTION doctrove_embed.status_snapshot(), doctrove_embed.worker_snapshot() TO PUBLIC;
GRANT EXECUTE ON FUNCTION doctrove_embed.input_text(text, text) TO PUBLIC;

-- A GRANT or REVOKE in an extension script records the object's whole ACL as its initial
-- privileges, including what a user granted to roles since 0.1.0; pg_dump then leaves those
-- grants out, and a restore loses them. Keep only the entries a fresh install records (the
-- owner's and PUBLIC's).
UPDATE pg_catalog.pg_init_privs AS i
SET initprivs = ARRAY(
    SELECT item FROM pg_catalog.unnest(i.initprivs) AS item
    WHERE (SELECT e.grantee FROM pg_catalog.aclexplode(ARRAY[item]) AS e LIMIT 1) IN (0,
        CASE i.classoid
            WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN (SELECT relowner FROM pg_catalog.pg_class WHERE oid = i.objoid)
            WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN (SELECT proowner FROM pg_catalog.pg_proc WHERE oid = i.objoid)
            WHEN 'pg_catalog.pg_namespace'::pg_catalog.regclass THEN (SELECT nspowner FROM pg_catalog.pg_namespace WHERE oid = i.objoid)
        END))
FROM pg_catalog.pg_depend AS d
WHERE i.privtype = 'e' AND i.objsubid = 0
  AND d.classid = i.classoid AND d.objid = i.objoid AND d.deptype = 'e'
  AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
  AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'doctrove_embed');
