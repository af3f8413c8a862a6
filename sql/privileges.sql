-- Functions that spend money (API calls) or change the database are not for every role.
-- A superuser grants them as needed, for example:
--   GRANT EXECUTE ON FUNCTION embed_pending(integer) TO embedder;
REVOKE EXECUTE ON FUNCTION @extschema@.embed_pending(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION doctrove_embed.create_pending_index() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION doctrove_embed.watch() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION doctrove_embed.unwatch() FROM PUBLIC;
