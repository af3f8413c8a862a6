-- Progress of the backlog, from shared memory (no count of the table on each read).
CREATE VIEW doctrove_embed.status AS
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
       hnsw_index,
       b.papers_in_batches,
       b.batch_tokens_used,
       pg_catalog.round(b.live_cost_usd::pg_catalog.numeric, 4) AS live_cost_usd,
       pg_catalog.round(b.batch_cost_usd::pg_catalog.numeric, 4) AS batch_cost_usd,
       q.hits AS query_cache_hits,
       q.misses AS query_cache_misses
FROM doctrove_embed.status_snapshot() CROSS JOIN doctrove_embed.batch_snapshot() AS b
CROSS JOIN doctrove_embed.query_cache_snapshot() AS q;

-- One row per background worker, with the database it serves.
CREATE VIEW doctrove_embed.workers AS
SELECT w.worker, w.pid, d.datname AS database, w.state, w.batches, w.papers_embedded, w.failures, w.last_error,
       pg_catalog.to_timestamp(w.last_batch_at) AS last_batch_at
FROM doctrove_embed.worker_snapshot() AS w
LEFT JOIN pg_catalog.pg_database AS d ON d.oid OPERATOR(pg_catalog.=) w.database_oid;
