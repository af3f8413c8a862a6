-- A backfill through the Batch API that commits each batch as it goes: CALL it (from psql or a
-- pg_cron job) rather than SELECT submit_batches(), and no paper stays locked while the other
-- batches' files go up, and a batch's claims are committed as soon as the batch exists. A
-- procedure that commits cannot carry SET search_path, so every name below is schema-qualified.
CREATE PROCEDURE doctrove_embed.submit_backfill(max_papers pg_catalog.int8 DEFAULT NULL)
LANGUAGE plpgsql AS $$
BEGIN
    CALL doctrove_embed.submit_backfill(max_papers, 'default');
END
$$;
REVOKE ALL ON PROCEDURE doctrove_embed.submit_backfill(pg_catalog.int8) FROM PUBLIC;

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
