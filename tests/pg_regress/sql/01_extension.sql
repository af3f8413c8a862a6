-- CREATE EXTENSION pulls in pgvector and puts the functions on the default search_path.
CREATE EXTENSION doctrove_embed CASCADE;
SELECT extname FROM pg_extension WHERE extname IN ('vector', 'doctrove_embed') ORDER BY extname;
-- (A procedure's arguments read "IN ..." from PostgreSQL 14 on; the mode is left out.)
SELECT p.proname, regexp_replace(pg_get_function_identity_arguments(p.oid), '(^|, )IN ', '\1', 'g') AS args, n.nspname
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'doctrove_embed'
ORDER BY n.nspname, p.proname, 2;
-- The settings and their defaults (the port of the mock, chosen when the suite starts, as PORT).
SELECT name, regexp_replace(setting, '127\.0\.0\.1:[0-9]+', '127.0.0.1:PORT') AS setting, context
FROM pg_settings WHERE name LIKE 'doctrove_embed.%' ORDER BY name;
