-- Row trigger installed by doctrove_embed.watch(): clears the embedding column named by its
-- argument. The trigger's WHEN clause calls it only when the title or abstract changed.
CREATE FUNCTION doctrove_embed.reset_embedding() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW := pg_catalog.jsonb_populate_record(NEW, pg_catalog.jsonb_build_object(TG_ARGV[0], NULL));
    RETURN NEW;
END
$$;
