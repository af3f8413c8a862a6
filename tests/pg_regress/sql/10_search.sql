-- search() with a threshold, a filter and columns: what is refused, and with what SQLSTATE,
-- before the query is embedded (nothing is paid for a search that cannot run); then a search
-- against the mock with a filter of each kind.
\set VERBOSITY default
\set mock `echo "$DOCTROVE_TEST_MOCK"`
CREATE TABLE search_papers (
    doctrove_paper_id bigint PRIMARY KEY,
    doctrove_title text,
    doctrove_abstract text,
    doctrove_embedding vector(4),
    doctrove_source text,
    published date,
    authors text[]
);
INSERT INTO search_papers VALUES
    (1, 'Graph networks', NULL, '[1,0,0,0]', 'arxiv', '2024-02-01', '{Ada,Bo}'),
    (2, 'Protein folding', NULL, '[0,1,0,0]', 'biorxiv', '2023-05-01', '{Cy}'),
    (3, 'Graph kernels', NULL, '[0.9,0.1,0,0]', 'arxiv', '2022-01-01', '{Bo}'),
    (4, 'Not embedded', NULL, NULL, 'arxiv', '2024-03-01', '{Ada}');
SELECT set_config('doctrove_embed.table', 'search_papers', false) IS NOT NULL AS set;
SELECT set_config('doctrove_embed.api_base_url', :'mock' || '/s=regress_search/dim=4/v1', false) IS NOT NULL AS pointed;
SELECT * FROM doctrove_embed.search('q', 5, NULL, '{"no_such_column": 1}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM doctrove_embed.search('q', 5, NULL, NULL, ARRAY['doctrove_source', 'nope']);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM doctrove_embed.search('q', 5, NULL, '{"doctrove_source": {"~": "arx.*"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM doctrove_embed.search('q', 5, NULL, '{"doctrove_source": {"in": "arxiv"}}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM doctrove_embed.search('q', 5, NULL, '"doctrove_source"');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM doctrove_embed.search('q', 0, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM doctrove_embed.search('q', 50001, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM doctrove_embed.search('q', 5, 1.01);
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM doctrove_embed.search(NULL, 5, NULL);
\echo :LAST_ERROR_SQLSTATE
-- Filters of each kind, each value in the column's own type.
SELECT paper_id, title FROM doctrove_embed.search('q', 10, NULL, '{"doctrove_source": "arxiv"}') ORDER BY paper_id;
SELECT paper_id FROM doctrove_embed.search('q', 10, NULL, '{"published": {">=": "2024-01-01"}}') ORDER BY paper_id;
SELECT paper_id FROM doctrove_embed.search('q', 10, NULL, '{"authors": {"@>": ["Bo"]}}') ORDER BY paper_id;
SELECT paper_id FROM doctrove_embed.search('q', 10, NULL, '{"doctrove_source": {"in": ["biorxiv", "medrxiv"]}}') ORDER BY paper_id;
SELECT paper_id, data FROM doctrove_embed.search('q', 10, NULL, '{"doctrove_paper_id": 3}', ARRAY['published', 'authors']);
-- A value the column's type does not take is that type's own error.
SELECT * FROM doctrove_embed.search('q', 10, NULL, '{"published": {">=": "next week"}}');
\echo :LAST_ERROR_SQLSTATE
RESET doctrove_embed."table";
DROP TABLE search_papers;
