-- watch() installs the wake-up and reset triggers; an edit of the title or abstract clears the
-- embedding, any other update leaves it.
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE TABLE doctrove_papers (
    doctrove_paper_id bigint PRIMARY KEY,
    doctrove_source text DEFAULT 'arxiv',
    doctrove_title text,
    doctrove_abstract text,
    doctrove_embedding vector(4)
);
SELECT doctrove_embed.watch();
SELECT doctrove_embed.watch();  -- idempotent
SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'doctrove_papers'::regclass ORDER BY tgname;
INSERT INTO doctrove_papers (doctrove_paper_id, doctrove_title, doctrove_abstract, doctrove_embedding)
VALUES (1, 'A', 'a', '[1,1,1,1]'), (2, 'B', 'b', '[2,2,2,2]'), (3, 'C', NULL, '[3,3,3,3]');
UPDATE doctrove_papers SET doctrove_source = 'other' WHERE doctrove_paper_id = 1;
UPDATE doctrove_papers SET doctrove_title = 'B' WHERE doctrove_paper_id = 2;     -- same text: kept
UPDATE doctrove_papers SET doctrove_abstract = 'new' WHERE doctrove_paper_id = 3;  -- changed: cleared
SELECT doctrove_paper_id, doctrove_source, doctrove_embedding FROM doctrove_papers ORDER BY 1;
SELECT doctrove_embed.unwatch();
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'doctrove_papers'::regclass;
-- Status without running workers: the pending figure is the last count taken (the view never
-- counts the table itself), the rest is zero.
SELECT doctrove_embed.create_pending_index();
SELECT get_papers_needing_embeddings_count();
SELECT pending, failed, workers_running, workers_configured, enabled, pending_counted_at IS NOT NULL AS counted
FROM doctrove_embed.status;
SELECT count(*) AS worker_rows FROM doctrove_embed.workers;
DROP TABLE doctrove_papers;
