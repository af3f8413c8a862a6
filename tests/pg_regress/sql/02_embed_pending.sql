-- The happy path against the mock: each paper gets the mock's vector for its text.
\set VERBOSITY default
-- The mock's root URL (http://127.0.0.1:PORT, the port chosen when the suite starts), from scripts/test.sh.
\set mock `echo "$DOCTROVE_TEST_MOCK"`
CREATE TABLE doctrove_papers (
    doctrove_paper_id bigint PRIMARY KEY,
    doctrove_title text,
    doctrove_abstract text,
    doctrove_embedding vector(4)
);
INSERT INTO doctrove_papers VALUES
    (1, 'Deep Residual Learning', 'We present a residual learning framework.', NULL),
    (2, 'No abstract here', NULL, NULL),
    (3, 'Blank abstract', '   ', NULL),
    (4, NULL, 'A paper with no title is never sent.', NULL),
    (5, '', 'Nor is one with an empty title.', NULL);
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_basic/dim=4/v1', false) IS NOT NULL AS pointed;
CREATE INDEX ON doctrove_papers (doctrove_paper_id) WHERE doctrove_embedding IS NULL;
SELECT get_papers_needing_embeddings_count();
SELECT successful_embeddings, failed_embeddings FROM embed_pending(250);
SELECT doctrove_paper_id, doctrove_embed.input_text(doctrove_title, doctrove_abstract) AS sent, doctrove_embedding
FROM doctrove_papers ORDER BY doctrove_paper_id;
SELECT get_papers_needing_embeddings_count();
-- Nothing pending: zeros, no API call.
SELECT successful_embeddings, failed_embeddings, api_ms, db_ms FROM embed_pending(250);
DROP TABLE doctrove_papers;
RESET doctrove_embed.api_base_url;
