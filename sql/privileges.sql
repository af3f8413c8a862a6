-- What each role may do. PUBLIC reads the status views (figures, no paper ids, no texts), may
-- call input_text(), and may call the functions that take a job name, which check the caller
-- themselves (below); everything else is granted explicitly by a superuser (README, "Security":
-- the grants of an embedding role and of a monitoring role).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA doctrove_embed FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.embed_pending(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.get_papers_needing_embeddings_count() FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA doctrove_embed FROM PUBLIC;

GRANT USAGE ON SCHEMA doctrove_embed TO PUBLIC;
GRANT SELECT ON doctrove_embed.status, doctrove_embed.workers TO PUBLIC;
-- The functions behind the two views: a view's caller needs the right to run them.
GRANT EXECUTE ON FUNCTION doctrove_embed.status_snapshot(), doctrove_embed.worker_snapshot(), doctrove_embed.batch_snapshot(),
    doctrove_embed.query_cache_snapshot() TO PUBLIC;
GRANT EXECUTE ON FUNCTION doctrove_embed.input_text(text, text), doctrove_embed.input_text(text, text, text) TO PUBLIC;

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
-- The Batch API with a job name: the same rule (the job granted, or the table owned).
GRANT EXECUTE ON FUNCTION doctrove_embed.submit_batches(bigint, text), doctrove_embed.collect_batches(text),
    doctrove_embed.cancel_batches(text) TO PUBLIC;
GRANT EXECUTE ON PROCEDURE doctrove_embed.submit_backfill(bigint, text) TO PUBLIC;

-- The trigger functions watch() installs run no statement of the caller's choosing; they
-- still carry a search_path of their own. CREATE TRIGGER needs EXECUTE on the function, so a
-- table's owner runs watch(job) (or watch(), granted) as itself: PUBLIC may attach them, only to
-- tables it may put triggers on, and SQL cannot call a trigger function otherwise. (One wakes an
-- idle worker at commit; the other clears the column its trigger names in the row updated.)
ALTER FUNCTION doctrove_embed.wake_workers() SET search_path = pg_catalog, pg_temp;
GRANT EXECUTE ON FUNCTION doctrove_embed.wake_workers(), doctrove_embed.reset_embedding() TO PUBLIC;

-- The pending selection reads the claims of open batches with the caller's rights; the row
-- policy on the table shows each role only the claims of tables it may read.
GRANT SELECT ON doctrove_embed.batch_papers TO PUBLIC;
