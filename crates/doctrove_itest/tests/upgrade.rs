//! Upgrades between releases: 0.1.0, 0.2.0 and 0.3.0, each installed from its script as released
//! (`sql/released/`), updated with `ALTER EXTENSION doctrove_embed UPDATE`, must equal a fresh
//! install of the current version, object for object, definition for definition, privilege for
//! privilege, and keep its failure rows and the grants made to roles; `pg_dump`/`pg_restore`
//! keeps the failure rows, and the jobs with their grants.

use std::collections::BTreeSet;
use std::process::Command;

use doctrove_itest::{cluster, record_attack};
use postgres::{Client, NoTls};

/// The extension's version: the root package's, which pgrx gives the install script.
fn current_version() -> &'static str {
    include_str!("../../../Cargo.toml")
        .lines()
        .find_map(|line| line.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("the root Cargo.toml names a version")
}

fn fresh_database(name: &str) -> Client {
    let mut admin = Client::connect(&cluster(), NoTls).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    connect(name)
}

fn connect(name: &str) -> Client {
    Client::connect(&format!("{} dbname={name}", cluster()), NoTls).unwrap()
}

/// Creates the cluster-wide roles the tests grant to, once per test binary: tests run side by
/// side, and two sessions checking for a role and then creating it would race.
fn create_roles() {
    static ROLES: std::sync::Once = std::sync::Once::new();
    ROLES.call_once(|| {
        Client::connect(&cluster(), NoTls)
            .unwrap()
            .batch_execute(
                "DO $$ BEGIN
                     IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'upgrade_embedder') THEN CREATE ROLE upgrade_embedder; END IF;
                     IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'upgrade_monitor') THEN CREATE ROLE upgrade_monitor; END IF;
                 END $$;",
            )
            .unwrap();
    });
}

/// A papers table, a role that embeds and one that monitors, with the grants README gives them.
fn prepare(client: &mut Client) {
    create_roles();
    client
        .batch_execute(
            "CREATE TABLE public.doctrove_papers (doctrove_paper_id text PRIMARY KEY, doctrove_title text,
                 doctrove_abstract text, doctrove_embedding vector(8));
             GRANT EXECUTE ON FUNCTION embed_pending(integer) TO upgrade_embedder;
             GRANT SELECT, INSERT, UPDATE, DELETE ON doctrove_embed.failures TO upgrade_embedder;
             GRANT EXECUTE ON FUNCTION get_papers_needing_embeddings_count() TO upgrade_monitor;
             GRANT SELECT (paper_id, attempts) ON doctrove_embed.failures TO upgrade_monitor;",
        )
        .unwrap();
}

/// Every object of the extension with its definition and privileges, the extension's initial
/// privileges, and its configuration tables, one line each, names instead of OIDs.
fn catalog(client: &mut Client) -> BTreeSet<String> {
    let sql = "
        WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'doctrove_embed'),
        members AS (
            SELECT d.classid, d.objid FROM pg_depend d, ext
            WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
        SELECT 'function ' || pg_get_functiondef(p.oid) || ' acl ' || coalesce(p.proacl::text, 'default')
        FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
        UNION ALL
        SELECT 'relation ' || c.oid::regclass::text || ' kind ' || c.relkind::text || ' acl ' || coalesce(c.relacl::text, 'default')
               || coalesce(' view ' || pg_get_viewdef(c.oid), '')
               || ' columns ' || coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                      || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                      || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
                      || coalesce(' acl ' || a.attacl::text, ''), ', ' ORDER BY a.attnum)
                   FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
               || ' constraints ' || coalesce((SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), ', ' ORDER BY conname)
                   FROM pg_constraint WHERE conrelid = c.oid), '')
               || ' indexes ' || coalesce((SELECT string_agg(pg_get_indexdef(indexrelid), ', ' ORDER BY indexrelid::regclass::text)
                   FROM pg_index WHERE indrelid = c.oid), '')
               || ' comment ' || coalesce(obj_description(c.oid, 'pg_class'), '')
        FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
        UNION ALL
        SELECT 'schema ' || n.nspname || ' acl ' || coalesce(n.nspacl::text, 'default')
        FROM members m JOIN pg_namespace n ON m.classid = 'pg_namespace'::regclass AND n.oid = m.objid
        UNION ALL
        SELECT 'other ' || pg_describe_object(m.classid, m.objid, 0)
        FROM members m WHERE m.classid NOT IN ('pg_proc'::regclass, 'pg_class'::regclass, 'pg_namespace'::regclass)
        UNION ALL
        SELECT 'initial privileges ' || pg_describe_object(i.classoid, i.objoid, i.objsubid) || ' ' || i.privtype::text || ' ' || i.initprivs::text
        FROM pg_init_privs i JOIN members m ON m.classid = i.classoid AND m.objid = i.objoid
        UNION ALL
        SELECT 'role dependency ' || pg_describe_object(s.classid, s.objid, s.objsubid) || ' ' || s.deptype::text || ' '
               || s.refobjid::regrole::text
        FROM pg_shdepend s JOIN members m ON m.classid = s.classid AND m.objid = s.objid
        WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        UNION ALL
        SELECT 'extension version ' || e.extversion || ' config ' || coalesce(e.extconfig::regclass[]::text, '')
               || ' conditions ' || coalesce(e.extcondition::text, '')
        FROM pg_extension e WHERE e.extname = 'doctrove_embed'";
    client
        .query(sql, &[])
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect()
}

fn failure_rows(client: &mut Client) -> Vec<(String, i32, String)> {
    client
        .query(
            "SELECT paper_id, attempts, last_error FROM doctrove_embed.failures ORDER BY paper_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect()
}

/// A program of the server's own version (pg_dump refuses a newer server).
fn server_program(name: &str) -> Command {
    let bin =
        std::env::var("DOCTROVE_TEST_PG_BIN").expect("DOCTROVE_TEST_PG_BIN is not set: run these tests through `make test`");
    Command::new(format!("{bin}/{name}"))
}

/// Installs `from` from its released script, updates it to the current version (through every
/// step between) and compares it with a fresh install: same catalog, failure rows and grants kept.
fn assert_update_from_equals_a_fresh_install(from: &str) {
    let tag = from.replace('.', "_");
    let mut old = fresh_database(&format!("it_upgrade_from_{tag}"));
    old.batch_execute(&format!(
        "CREATE EXTENSION vector; CREATE EXTENSION doctrove_embed VERSION '{from}'"
    ))
    .unwrap();
    prepare(&mut old);
    old.batch_execute(
        "INSERT INTO doctrove_embed.failures (relid, paper_id, attempts, last_error)
         VALUES ('public.doctrove_papers', 'p1', 3, 'HTTP 400: too long'), ('public.doctrove_papers', 'p2', 1, 'HTTP 400: bad')",
    )
    .unwrap();
    let before = catalog(&mut old);
    assert!(
        before
            .iter()
            .any(|line| line.starts_with(&format!("extension version {from} "))),
        "{before:#?}"
    );
    let failures = failure_rows(&mut old);

    old.batch_execute("ALTER EXTENSION doctrove_embed UPDATE").unwrap();
    let upgraded = catalog(&mut old);

    let mut fresh = fresh_database(&format!("it_upgrade_fresh_{tag}"));
    fresh.batch_execute("CREATE EXTENSION doctrove_embed CASCADE").unwrap();
    prepare(&mut fresh);
    let installed = catalog(&mut fresh);

    let current = current_version();
    assert!(
        installed
            .iter()
            .any(|line| line.starts_with(&format!("extension version {current} "))),
        "{installed:#?}"
    );
    assert_ne!(
        before, installed,
        "{from} and {current} have the same catalog: this test would prove nothing"
    );
    let missing: Vec<_> = installed.difference(&upgraded).collect();
    let extra: Vec<_> = upgraded.difference(&installed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the extension updated from {from} differs from a fresh install\nonly in a fresh install:\n{missing:#?}\nonly after the upgrade:\n{extra:#?}"
    );
    assert_eq!(failure_rows(&mut old), failures);
    // The roles' grants came through (they are part of the compared ACLs; checked by name too).
    assert_eq!(
        role_grants(&mut old),
        [true, true, true, false, true],
        "embedder, embedder, monitor keep their grants; PUBLIC has no right on failures"
    );
}

/// The chain 0.1.0 -> 0.2.0 -> current.
#[test]
fn an_upgraded_0_1_0_equals_a_fresh_install_and_keeps_failures_and_grants() {
    assert_update_from_equals_a_fresh_install("0.1.0");
}

/// 0.2.0 as released -> current.
#[test]
fn an_upgraded_0_2_0_equals_a_fresh_install_and_keeps_failures_and_grants() {
    assert_update_from_equals_a_fresh_install("0.2.0");
}

/// 0.3.0 as released -> current.
#[test]
fn an_upgraded_0_3_0_equals_a_fresh_install_and_keeps_failures_and_grants() {
    assert_update_from_equals_a_fresh_install("0.3.0");
}

/// Dumps `source` with pg_dump and restores it into a new database `target`.
fn dump_and_restore(source: &str, target: &str) {
    let dump = std::env::temp_dir().join(format!("doctrove_embed_dump_{source}_{}.custom", std::process::id()));
    let status = server_program("pg_dump")
        .args(["-Fc", "-f"])
        .arg(&dump)
        .args(["-d", &format!("{} dbname={source}", cluster())])
        .status()
        .unwrap();
    assert!(status.success(), "pg_dump failed");
    fresh_database(target);
    let status = server_program("pg_restore")
        .args(["--exit-on-error", "-d", &format!("{} dbname={target}", cluster())])
        .arg(&dump)
        .status()
        .unwrap();
    let _ = std::fs::remove_file(&dump);
    assert!(status.success(), "pg_restore failed");
}

/// Whether the embedding and monitoring roles have their grants in `client`'s database.
fn role_grants(client: &mut Client) -> Vec<bool> {
    let row = client
        .query_one(
            "SELECT has_function_privilege('upgrade_embedder', 'embed_pending(integer)', 'EXECUTE'),
                    has_table_privilege('upgrade_embedder', 'doctrove_embed.failures', 'INSERT'),
                    has_function_privilege('upgrade_monitor', 'get_papers_needing_embeddings_count()', 'EXECUTE'),
                    has_table_privilege('public', 'doctrove_embed.failures', 'SELECT'),
                    has_column_privilege('upgrade_monitor', 'doctrove_embed.failures', 'attempts', 'SELECT')",
            &[],
        )
        .unwrap();
    (0..5).map(|i| row.get(i)).collect()
}

#[test]
fn pg_dump_and_pg_restore_keep_the_failure_rows_and_grants_of_a_fresh_and_an_upgraded_install() {
    for (source, version) in [("it_dump_fresh", None), ("it_dump_upgraded", Some("0.1.0"))] {
        let mut client = fresh_database(source);
        client.batch_execute("CREATE EXTENSION vector").unwrap();
        match version {
            Some(v) => client
                .batch_execute(&format!("CREATE EXTENSION doctrove_embed VERSION '{v}'"))
                .unwrap(),
            None => client.batch_execute("CREATE EXTENSION doctrove_embed").unwrap(),
        }
        prepare(&mut client);
        client
            .batch_execute(
                "INSERT INTO doctrove_embed.failures (relid, paper_id, attempts, last_error)
                 SELECT 'public.doctrove_papers', 'p' || g, g, 'HTTP 400: rejected ' || g FROM generate_series(1, 25) g",
            )
            .unwrap();
        if version.is_some() {
            client.batch_execute("ALTER EXTENSION doctrove_embed UPDATE").unwrap();
        }
        // A job and its grant: the table and role are restored by name.
        client
            .batch_execute(
                "SELECT doctrove_embed.create_job('dumped', 'doctrove_papers', 'doctrove_embedding', 'dumped-model', weight => 7);
                 SELECT doctrove_embed.grant_job('dumped', 'upgrade_monitor');",
            )
            .unwrap();
        let failures = failure_rows(&mut client);
        assert_eq!(failures.len(), 25);

        let restored = format!("{source}_restored");
        dump_and_restore(source, &restored);
        let mut restored = connect(&restored);
        assert_eq!(failure_rows(&mut restored), failures, "{source}");
        let job = restored
            .query_one(
                "SELECT d.relid::text, d.model, d.weight, g.grantee::text FROM doctrove_embed.job_definitions d
                 JOIN doctrove_embed.job_grants g ON g.job = d.name WHERE d.name = 'dumped'",
                &[],
            )
            .unwrap();
        assert_eq!(
            (
                job.get::<_, String>(0),
                job.get::<_, String>(1),
                job.get::<_, i32>(2),
                job.get::<_, String>(3)
            ),
            (
                "doctrove_papers".to_string(),
                "dumped-model".to_string(),
                7,
                "upgrade_monitor".to_string()
            ),
            "{source}: the job and its grant after a restore"
        );
        assert_eq!(
            role_grants(&mut restored),
            [true, true, true, false, true],
            "{source}: the roles' grants after a restore"
        );
    }
}

#[test]
fn the_update_script_runs_nothing_planted_and_leaves_roles_droppable() {
    let mut db = fresh_database("it_upgrade_planted");
    db.batch_execute("CREATE EXTENSION vector; CREATE EXTENSION doctrove_embed VERSION '0.1.0'")
        .unwrap();
    // A role that may create objects in public (the default up to PostgreSQL 14) plants an
    // exact-match operator for the comparisons a careless update script would write unqualified.
    db.batch_execute(
        "DO $$ BEGIN
             IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'upgrade_planter') THEN CREATE ROLE upgrade_planter; END IF;
             IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'upgrade_dropped') THEN CREATE ROLE upgrade_dropped; END IF;
         END $$;
         GRANT CREATE ON SCHEMA public TO upgrade_planter;
         CREATE TABLE public.planted_calls (called_as text);
         GRANT INSERT ON public.planted_calls TO upgrade_planter;
         SET ROLE upgrade_planter;
         CREATE FUNCTION public.planted_eq(oid, regclass) RETURNS boolean LANGUAGE sql AS
             $f$ INSERT INTO public.planted_calls VALUES (current_user) RETURNING $1 OPERATOR(pg_catalog.=) $2::oid $f$;
         CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.planted_eq);
         CREATE FUNCTION public.planted_eq_char(\"char\", \"char\") RETURNS boolean LANGUAGE sql AS
             $f$ INSERT INTO public.planted_calls VALUES (current_user) RETURNING $1 OPERATOR(pg_catalog.=) $2 $f$;
         CREATE OPERATOR public.= (LEFTARG = \"char\", RIGHTARG = \"char\", FUNCTION = public.planted_eq_char);
         RESET ROLE;
         GRANT EXECUTE ON FUNCTION embed_pending(integer) TO upgrade_dropped;
         GRANT SELECT, INSERT ON doctrove_embed.failures TO upgrade_dropped;",
    )
    .unwrap();
    db.batch_execute("ALTER EXTENSION doctrove_embed UPDATE").unwrap();
    let calls: i64 = db.query_one("SELECT count(*) FROM public.planted_calls", &[]).unwrap().get(0);
    record_attack(
        "operators planted in the extension's schema, run by ALTER EXTENSION UPDATE",
        calls > 0,
    );
    assert_eq!(calls, 0, "the update script ran a planted operator");
    // A role granted rights before the update can still be dropped after it (on PostgreSQL 17
    // and later, initial privileges naming a role hold a dependency on it).
    db.batch_execute("DROP OWNED BY upgrade_dropped").unwrap();
    let mut admin = Client::connect(&cluster(), NoTls).unwrap();
    admin.batch_execute("DROP ROLE upgrade_dropped").unwrap();
}
