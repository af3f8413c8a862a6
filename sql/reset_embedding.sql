-- Row trigger installed by doctrove_embed.watch(): clears the embedding column named by its
-- argument. The trigger's WHEN clause calls it only when the title or abstract changed.
CREATE FUNCTION doctrove_embed.reset_embedding() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW := jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[0], NULL));
    RETURN NEW;
END
$$;
