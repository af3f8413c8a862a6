-- This installation's secret: it seals the metadata of each batch this database submits, so a
-- batch found on the API is adopted only when this installation made it (anyone holding the API
-- key can copy a batch's metadata, but not its seal). Readable by the extension's owner alone,
-- and not dumped: a copy restored elsewhere makes its own when the extension is created there.
CREATE TABLE doctrove_embed.installation (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    secret text NOT NULL
);
INSERT INTO doctrove_embed.installation (secret)
    SELECT pg_catalog.gen_random_uuid()::pg_catalog.text OPERATOR(pg_catalog.||) pg_catalog.gen_random_uuid()::pg_catalog.text;
