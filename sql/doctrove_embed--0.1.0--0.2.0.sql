-- doctrove_embed 0.1.0 -> 0.2.0: the catalog changes of 0.2.0 (see CHANGELOG.md). The library
-- is replaced by `make install` before this script runs; the C functions keep their names and
-- signatures, so only SQL-level objects change here. A fresh 0.2.0 install and an upgraded 0.1.0
-- are checked to be the same (crates/doctrove_itest/tests/upgrade.rs).
\echo Use "ALTER EXTENSION doctrove_embed UPDATE TO '0.2.0'" to load this file. \quit

-- Nothing a role planted in a schema on the update's search_path (the extension's schema comes
-- first) may be picked up by this superuser script; every name below is qualified as well.
SET LOCAL search_path = pg_catalog, pg_temp;

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

-- PUBLIC keeps the two views and input_text(); grants made to roles are left as they are. Only
-- the extension's own functions are touched (not what a user put in its schema).
DO $$
DECLARE
    f pg_catalog.regprocedure;
BEGIN
    FOR f IN
        SELECT d.objid::pg_catalog.regprocedure FROM pg_catalog.pg_depend AS d
        WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
          AND d.deptype OPERATOR(pg_catalog.=) 'e'::pg_catalog.char
          AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass::pg_catalog.oid
          AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension AS e
                                                  WHERE e.extname OPERATOR(pg_catalog.=) 'doctrove_embed'::pg_catalog.name)
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;
REVOKE ALL ON doctrove_embed.failures, doctrove_embed.status, doctrove_embed.workers FROM PUBLIC;
GRANT SELECT ON doctrove_embed.status, doctrove_embed.workers TO PUBLIC;
GRANT EXECUTE ON FUNCTION doctrove_embed.status_snapshot(), doctrove_embed.worker_snapshot() TO PUBLIC;
GRANT EXECUTE ON FUNCTION doctrove_embed.input_text(pg_catalog.text, pg_catalog.text) TO PUBLIC;

-- A GRANT or REVOKE in an extension script records the object's whole ACL as its initial
-- privileges, including what a user granted to roles since 0.1.0 (on the table and on its
-- columns); pg_dump then leaves those grants out, and a restore loses them. Keep only the
-- entries a fresh install records (the owner's and PUBLIC's), drop column entries left empty,
-- and (PostgreSQL 17 and later) the roles' dependencies on the entries removed, so that the
-- roles can still be dropped.
DO $$
DECLARE
    m record;
BEGIN
    FOR m IN
        SELECT d.classid, d.objid,
               CASE WHEN d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid
                        THEN (SELECT c.relowner FROM pg_catalog.pg_class AS c WHERE c.oid OPERATOR(pg_catalog.=) d.objid)
                    WHEN d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid
                        THEN (SELECT p.proowner FROM pg_catalog.pg_proc AS p WHERE p.oid OPERATOR(pg_catalog.=) d.objid)
                    WHEN d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_namespace'::pg_catalog.regclass::pg_catalog.oid
                        THEN (SELECT n.nspowner FROM pg_catalog.pg_namespace AS n WHERE n.oid OPERATOR(pg_catalog.=) d.objid)
               END AS owner
        FROM pg_catalog.pg_depend AS d
        WHERE d.deptype OPERATOR(pg_catalog.=) 'e'::pg_catalog.char
          AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass::pg_catalog.oid
          AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension AS e
                                                  WHERE e.extname OPERATOR(pg_catalog.=) 'doctrove_embed'::pg_catalog.name)
    LOOP
        UPDATE pg_catalog.pg_init_privs AS i
        SET initprivs = ARRAY(
            SELECT item FROM pg_catalog.unnest(i.initprivs) AS item
            WHERE (SELECT a.grantee FROM pg_catalog.aclexplode(ARRAY[item]) AS a LIMIT 1)
                  OPERATOR(pg_catalog.=) ANY (ARRAY[0::pg_catalog.oid, m.owner]))
        WHERE i.privtype OPERATOR(pg_catalog.=) 'e'::pg_catalog.char
          AND i.classoid OPERATOR(pg_catalog.=) m.classid AND i.objoid OPERATOR(pg_catalog.=) m.objid;

        DELETE FROM pg_catalog.pg_init_privs AS i
        WHERE i.privtype OPERATOR(pg_catalog.=) 'e'::pg_catalog.char AND i.objsubid OPERATOR(pg_catalog.<>) 0
          AND i.classoid OPERATOR(pg_catalog.=) m.classid AND i.objoid OPERATOR(pg_catalog.=) m.objid
          AND pg_catalog.cardinality(i.initprivs) OPERATOR(pg_catalog.=) 0;

        DELETE FROM pg_catalog.pg_shdepend AS s
        WHERE s.deptype OPERATOR(pg_catalog.=) 'i'::pg_catalog.char
          AND s.dbid OPERATOR(pg_catalog.=) (SELECT db.oid FROM pg_catalog.pg_database AS db
                                             WHERE db.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
          AND s.classid OPERATOR(pg_catalog.=) m.classid AND s.objid OPERATOR(pg_catalog.=) m.objid
          AND s.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_authid'::pg_catalog.regclass::pg_catalog.oid
          AND NOT EXISTS (
              SELECT FROM pg_catalog.pg_init_privs AS i, pg_catalog.unnest(i.initprivs) AS item,
                          pg_catalog.aclexplode(ARRAY[item]) AS a
              WHERE i.classoid OPERATOR(pg_catalog.=) s.classid AND i.objoid OPERATOR(pg_catalog.=) s.objid
                AND i.objsubid OPERATOR(pg_catalog.=) s.objsubid
                AND a.grantee OPERATOR(pg_catalog.=) s.refobjid);
    END LOOP;
END
$$;
