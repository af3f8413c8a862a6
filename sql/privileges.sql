-- Functions that spend money (API calls) or change the database are not for every role.
-- A superuser grants them as needed, for example:
--   GRANT EXECUTE ON FUNCTION embed_pending(integer) TO embedder;
REVOKE EXECUTE ON FUNCTION @extschema@.embed_pending(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION doctrove_embed.create_pending_index() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION doctrove_embed.watch() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION doctrove_embed.retry_failed() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION doctrove_embed.create_hnsw_index() FROM PUBLIC;
-- search() calls the API, so it spends money too.
REVOKE EXECUTE ON FUNCTION doctrove_embed.search(text, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION doctrove_embed.unwatch() FROM PUBLIC;

-- Every role may read the status and count pending papers (which consults the failures).
-- A role that runs batches also needs to record failures:
--   GRANT INSERT, UPDATE, DELETE ON doctrove_embed.failures TO embedder;
GRANT USAGE ON SCHEMA doctrove_embed TO PUBLIC;
GRANT SELECT ON doctrove_embed.failures TO PUBLIC;
GRANT SELECT ON doctrove_embed.status, doctrove_embed.workers TO PUBLIC;
