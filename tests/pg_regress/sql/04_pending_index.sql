-- Without a partial index, the count and the fetch warn with the command that creates one.
\set VERBOSITY default
\set SHOW_CONTEXT never
-- The mock's root URL (http://127.0.0.1:PORT, the port chosen when the suite starts), from scripts/test.sh.
\set mock `echo "$DOCTROVE_TEST_MOCK"`
CREATE SCHEMA lab;
CREATE TABLE lab."Papers" (
    "Id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    "Title" text,
    "Abstract" text,
    "Embedding" vector(4)
);
SET doctrove_embed."table" = 'lab."Papers"';
SET doctrove_embed.id_column = 'Id';
SET doctrove_embed.title_column = 'Title';
SET doctrove_embed.abstract_column = 'Abstract';
SET doctrove_embed.embedding_column = 'Embedding';
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_index/dim=4/v1', false) IS NOT NULL AS pointed;
INSERT INTO lab."Papers" ("Title") SELECT 'T' || g FROM generate_series(1, 3) g;
SELECT get_papers_needing_embeddings_count();
SELECT successful_embeddings FROM embed_pending(1);
SELECT doctrove_embed.pending_index_command();
SELECT doctrove_embed.create_pending_index();
-- Now no warning.
SELECT get_papers_needing_embeddings_count();
SELECT successful_embeddings FROM embed_pending(10);
SELECT indexdef FROM pg_indexes WHERE schemaname = 'lab';
RESET ALL;
DROP SCHEMA lab CASCADE;
