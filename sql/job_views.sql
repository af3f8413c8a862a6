-- Each job the caller may run, with its progress since the server started (from shared memory:
-- no count of the table on read).
CREATE VIEW doctrove_embed.jobs AS
SELECT name, table_name, embedding_column, model, dimensions, enabled, weight, batch_size,
       pending,
       pg_catalog.to_timestamp(pending_counted_at) AS pending_counted_at,
       embedded,
       failed,
       pg_catalog.round(papers_per_min::pg_catalog.numeric, 1) AS papers_per_min,
       pg_catalog.make_interval(secs => pg_catalog.round(eta_seconds)) AS eta,
       tokens_used,
       batch_tokens_used,
       pg_catalog.round(cost_usd::pg_catalog.numeric, 4) AS cost_usd,
       last_error,
       pg_catalog.to_timestamp(last_error_at) AS last_error_at,
       endpoints
FROM doctrove_embed.job_snapshot();
