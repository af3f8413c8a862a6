//! The security suite: each test plays an attacker against the installed extension and the
//! real servers, asserts that the attack failed, and records it (`record_attack`), so `make
//! test` prints how many attacks were tried and how many worked (which must be none).

use std::time::{Duration, Instant};

use doctrove_itest::cluster::{wait_for, Cluster};
use doctrove_itest::{connect_as, counters, mock_root, mock_stats, record_attack, TestDb};
use postgres::Client;

/// The objects planted under built-in names (see the file), for role `planter`.
fn plant(client: &mut Client, planter: &str) {
    client
        .batch_execute(&include_str!("security/plants.sql").replace("@PLANTER@", planter))
        .unwrap();
}

/// `public.doctrove_papers` with an embedding column of `vector_type`, and `rows` (SQL values
/// lists or a query) inserted.
fn create_papers(client: &mut Client, vector_type: &str, rows: &str) {
    client
        .batch_execute(&format!(
            "CREATE TABLE public.doctrove_papers (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text,
                 doctrove_abstract text, doctrove_embedding {vector_type});
             INSERT INTO public.doctrove_papers {rows};"
        ))
        .unwrap();
}

fn is_superuser(client: &mut Client, role: &str) -> bool {
    client
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1",
            &[&role],
        )
        .unwrap()
        .get(0)
}

/// Planted objects that ran with another role's rights than the planter's: (kind, role).
fn calls_by_others(client: &mut Client, planter: &str) -> Vec<(String, String)> {
    client
        .query(
            "SELECT kind, run_as FROM public.called WHERE run_as OPERATOR(pg_catalog.<>) $1::pg_catalog.text ORDER BY 1",
            &[&planter],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A papers table owned by role `owner`, whose trigger, index expression and check constraint
/// each try to make `owner` a superuser and log who they ran as in `attempts`.
const OWNER_TRAPS: &str = "
    CREATE TABLE public.attempts (kind text, run_as text, superuser_after boolean);
    CREATE FUNCTION public.try_escalate(kind text) RETURNS boolean LANGUAGE plpgsql AS $$
    BEGIN
        BEGIN EXECUTE 'ALTER ROLE mallory SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
        -- The worker's session user is the bootstrap superuser: outside security-restricted mode
        -- this would succeed, and the row below would say who it became.
        BEGIN EXECUTE 'SET ROLE ' || pg_catalog.quote_ident(session_user); EXCEPTION WHEN OTHERS THEN NULL; END;
        INSERT INTO public.attempts SELECT kind, current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'mallory';
        RETURN true;
    END $$;
    CREATE FUNCTION public.trap_trigger() RETURNS trigger LANGUAGE plpgsql AS
        $$BEGIN PERFORM public.try_escalate('trigger'); RETURN NEW; END$$;
    CREATE FUNCTION public.trap_index(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS
        $$BEGIN PERFORM public.try_escalate('index expression'); RETURN t; END$$;
    CREATE FUNCTION public.trap_check(v vector) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS
        $$BEGIN PERFORM public.try_escalate('check constraint'); RETURN true; END$$;
    CREATE TABLE public.doctrove_papers (
        doctrove_paper_id bigint PRIMARY KEY,
        doctrove_title text,
        doctrove_abstract text,
        doctrove_embedding vector(8) CHECK (public.trap_check(doctrove_embedding)));
    CREATE INDEX ON public.doctrove_papers (public.trap_index(doctrove_title));
    CREATE TRIGGER trap BEFORE UPDATE ON public.doctrove_papers FOR EACH ROW EXECUTE FUNCTION public.trap_trigger();
    INSERT INTO public.doctrove_papers SELECT g, 'Paper ' || g, 'Abstract ' || g FROM pg_catalog.generate_series(1, 40) g;
    TRUNCATE public.attempts;";

#[test]
fn a_table_owner_gains_nothing_through_the_worker() {
    let cluster = Cluster::start(
        "security_worker",
        &[
            "shared_preload_libraries = 'doctrove_embed'".to_string(),
            "doctrove_embed.database = 'postgres'".to_string(),
            "doctrove_embed.workers = 1".to_string(),
            "doctrove_embed.enabled = off".to_string(),
            "doctrove_embed.naptime_ms = 500".to_string(),
            format!("doctrove_embed.api_base_url = '{}/s=security-worker/dim=8/v1'", mock_root()),
            "doctrove_embed.api_key = 'sk-security-worker'".to_string(),
        ],
    );
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE EXTENSION doctrove_embed CASCADE;
             CREATE ROLE mallory LOGIN;
             ALTER DATABASE postgres OWNER TO mallory;",
        )
        .unwrap();
    let connect_mallory = || {
        postgres::Client::connect(
            &format!("host=127.0.0.1 port={} user=mallory dbname=postgres", cluster.port),
            postgres::NoTls,
        )
        .unwrap()
    };
    let mut mallory = connect_mallory();
    mallory.batch_execute(OWNER_TRAPS).unwrap();
    // A decoy in a schema named after the user the workers connect as, which comes first on
    // the default search_path ("$user", public).
    mallory
        .batch_execute(
            "CREATE SCHEMA postgres;
             CREATE TABLE postgres.doctrove_papers (LIKE public.doctrove_papers);
             ALTER TABLE postgres.doctrove_papers ADD PRIMARY KEY (doctrove_paper_id);
             CREATE FUNCTION postgres.decoy_trigger() RETURNS trigger LANGUAGE plpgsql AS
                 $$BEGIN PERFORM public.try_escalate('decoy table'); RETURN NEW; END$$;
             CREATE TRIGGER decoy BEFORE UPDATE ON postgres.doctrove_papers FOR EACH ROW EXECUTE FUNCTION postgres.decoy_trigger();
             INSERT INTO postgres.doctrove_papers SELECT g, 'Decoy ' || g, NULL, NULL FROM pg_catalog.generate_series(1, 40) g;",
        )
        .unwrap();
    plant(&mut mallory, "mallory");
    // The database's owner puts the planted objects in front of pg_catalog for every session,
    // the workers' included.
    mallory
        .batch_execute("ALTER DATABASE postgres SET search_path = public, pg_catalog")
        .unwrap();
    admin
        .batch_execute("SET search_path = pg_catalog; SELECT doctrove_embed.create_pending_index();")
        .unwrap();
    // The workers pick the database's settings up when they connect: restart them.
    // (ALTER SYSTEM cannot share a transaction with anything, so one statement per call.)
    for statement in [
        "ALTER SYSTEM SET doctrove_embed.enabled = on",
        "SELECT pg_reload_conf()",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'doctrove_embed worker'",
    ] {
        admin.batch_execute(statement).unwrap();
    }

    let mut check = cluster.connect();
    check.batch_execute("SET search_path = pg_catalog").unwrap();
    wait_for(
        "the worker to embed every paper of public.doctrove_papers",
        Duration::from_secs(90),
        || {
            let embedded: i64 = check
                .query_one("SELECT count(doctrove_embedding) FROM public.doctrove_papers", &[])
                .ok()?
                .get(0);
            (embedded == 40).then_some(())
        },
    );
    let superuser = is_superuser(&mut check, "mallory");
    let attempts: Vec<(String, String, bool)> = check
        .query("SELECT kind, run_as, superuser_after FROM public.attempts ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for kind in ["check constraint", "index expression", "trigger"] {
        let fired: Vec<_> = attempts.iter().filter(|(k, _, _)| k == kind).collect();
        assert!(
            !fired.is_empty(),
            "the table's {kind} never ran in the worker: the test proves nothing"
        );
        let worked = superuser || fired.iter().any(|(_, run_as, after)| run_as != "mallory" || *after);
        record_attack(&format!("worker runs the table owner's {kind}"), worked);
        assert!(!worked, "{kind}: {fired:?}");
    }
    let decoy_written: i64 = check
        .query_one("SELECT count(doctrove_embedding) FROM postgres.doctrove_papers", &[])
        .unwrap()
        .get(0);
    let decoy_fired = attempts.iter().any(|(k, _, _)| k == "decoy table");
    record_attack(
        "a decoy table in a schema named after the worker's user",
        decoy_written > 0 || decoy_fired,
    );
    assert_eq!((decoy_written, decoy_fired), (0, false));
    let planted = calls_by_others(&mut check, "mallory");
    record_attack(
        "objects planted in public in front of pg_catalog, run by the worker",
        !planted.is_empty() || superuser,
    );
    assert!(planted.is_empty(), "planted objects ran with other rights: {planted:?}");
    assert!(!superuser);

    // The database's owner points the workers at another role's table, whose "title" is a
    // secret, through ALTER DATABASE ... SET: the workers refuse settings from the catalogs.
    let inputs_before = mock_stats("security-worker")["inputs"].as_u64().unwrap();
    admin
        .batch_execute(
            "SET search_path = pg_catalog;
             CREATE ROLE victim;
             CREATE TABLE public.secrets (id bigint PRIMARY KEY, secret text, notes text, embedding public.vector(8));
             ALTER TABLE public.secrets OWNER TO victim;
             INSERT INTO public.secrets VALUES (1, 'victim-password-123', NULL, NULL);",
        )
        .unwrap();
    mallory
        .batch_execute(
            "ALTER DATABASE postgres SET doctrove_embed.\"table\" = 'public.secrets';
             ALTER DATABASE postgres SET doctrove_embed.id_column = 'id';
             ALTER DATABASE postgres SET doctrove_embed.title_column = 'secret';
             ALTER DATABASE postgres SET doctrove_embed.abstract_column = 'notes';
             ALTER DATABASE postgres SET doctrove_embed.embedding_column = 'embedding';",
        )
        .unwrap();
    admin
        .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'doctrove_embed worker'")
        .unwrap();
    let error: String = wait_for(
        "the worker to refuse the database's settings",
        Duration::from_secs(60),
        || {
            let row = check
                .query_opt(
                    "SELECT last_error FROM doctrove_embed.workers WHERE last_error LIKE '%ALTER DATABASE%'",
                    &[],
                )
                .ok()??;
            Some(row.get(0))
        },
    );
    let written: i64 = check
        .query_one("SELECT count(embedding) FROM public.secrets", &[])
        .unwrap()
        .get(0);
    let sent = mock_stats("security-worker")["inputs"].as_u64().unwrap() != inputs_before;
    record_attack(
        "a database owner points the workers at another role's table",
        written > 0 || sent,
    );
    assert_eq!(written, 0, "{error}");
    assert!(!sent);
}

/// Builds the papers table as the superuser, then lets role `planter`, made owner of the
/// database, plant objects and put them in front of pg_catalog on the database's path.
fn planted_database(test: &str, planter: &str) -> TestDb {
    let db = TestDb::new(test);
    let mut admin = connect_as("postgres", &db.name);
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {planter}; CREATE ROLE {planter} LOGIN; ALTER DATABASE {} OWNER TO {planter};",
            db.name
        ))
        .unwrap();
    create_papers(
        &mut admin,
        "vector(8)",
        "SELECT g, 'Paper ' || g, 'Abstract ' || g FROM generate_series(1, 30) g",
    );
    let mut owner = connect_as(planter, &db.name);
    plant(&mut owner, planter);
    owner
        .batch_execute(&format!("ALTER DATABASE {} SET search_path = public, pg_catalog", db.name))
        .unwrap();
    db
}

#[test]
fn objects_planted_in_front_of_pg_catalog_never_run_for_a_superuser() {
    let planter = "sec_planter";
    let db = planted_database("sec_planted", planter);
    // A superuser's new session: the database's search_path puts the planted objects first.
    let mut su = connect_as("postgres", &db.name);
    let url = format!("{}/s={}/dim=8/v1", mock_root(), db.scope);
    su.execute(
        "SELECT pg_catalog.set_config('doctrove_embed.api_base_url', $1, false)",
        &[&url],
    )
    .unwrap();
    let path: String = su.query_one("SHOW search_path", &[]).unwrap().get(0);
    assert_eq!(path, "public, pg_catalog");
    let steps = [
        "SELECT doctrove_embed.create_pending_index()",
        "SELECT doctrove_embed.pending_index_command()",
        "SELECT doctrove_embed.watch()",
        "SELECT get_papers_needing_embeddings_count()",
        "SELECT * FROM embed_pending(20)",
        "SELECT * FROM embed_pending(20)",
        "SELECT * FROM doctrove_embed.status",
        "SELECT * FROM doctrove_embed.workers",
        "SELECT doctrove_embed.create_hnsw_index()",
        "SELECT * FROM doctrove_embed.similar_papers('3', 5)",
        "SELECT * FROM doctrove_embed.search('Paper 7', 5)",
        "UPDATE public.doctrove_papers SET doctrove_title = 'Edited' WHERE doctrove_paper_id OPERATOR(pg_catalog.=) 1",
        "SELECT doctrove_embed.retry_failed()",
        "SELECT doctrove_embed.unwatch()",
    ];
    for step in steps {
        su.batch_execute(step).unwrap_or_else(|e| panic!("{step}: {e}"));
    }
    let mut check = connect_as("postgres", &db.name);
    check.batch_execute("SET search_path = pg_catalog").unwrap();
    let embedded: i64 = check
        .query_one("SELECT count(doctrove_embedding) FROM public.doctrove_papers", &[])
        .unwrap()
        .get(0);
    assert_eq!(embedded, 29, "30 papers embedded, then one edit cleared its embedding");
    let planted = calls_by_others(&mut check, planter);
    let superuser = is_superuser(&mut check, planter);
    record_attack(
        "functions, operators and types planted in public before pg_catalog, run by a superuser",
        !planted.is_empty() || superuser,
    );
    assert!(planted.is_empty(), "planted objects ran as a superuser: {planted:?}");
    assert!(!superuser);
}

#[test]
fn the_key_never_follows_a_redirect() {
    let db = TestDb::new("sec_redirect");
    let mut client = db.connect();
    create_papers(&mut client, "vector(8)", "VALUES (1, 'Redirected', NULL, NULL)");
    let port = mock_root().rsplit(':').next().unwrap().to_string();
    for header in ["Authorization", "api-key"] {
        client
            .execute("SELECT set_config('doctrove_embed.api_key_header', $1, false)", &[&header])
            .unwrap();
        db.point_at_mock(&mut client, &format!("redirect={port}/dim=8/"));
        let outcome = client.query("SELECT * FROM embed_pending(5)", &[]);
        let redirected = mock_stats(&format!("{}-redirected", db.scope));
        let leaked =
            redirected["requests"].as_u64().unwrap_or(0) > 0 || redirected["requests_with_key"].as_u64().unwrap_or(0) > 0;
        record_attack(&format!("a redirecting API, key in {header}"), leaked || outcome.is_ok());
        assert!(!leaked, "the key followed the redirect: {redirected}");
        let error = outcome.expect_err("a redirect is an error");
        let db_error = error.as_db_error().expect("an ERROR from the server");
        assert_eq!(db_error.code().code(), "08000", "{db_error:?}");
        assert!(db_error.message().contains("redirect"), "{}", db_error.message());
        assert!(
            db_error.detail().unwrap_or("").contains(&format!("http://127.0.0.1:{port}")),
            "{db_error:?}"
        );
    }
    assert!(db.stats()["requests"].as_u64().unwrap() >= 2, "the API itself was asked");
}

/// Every object of the extension and what PUBLIC may do with it (functions without an ACL are
/// executable by PUBLIC, which `acldefault` shows).
const PUBLIC_GRANTS: &str = "
    SELECT pg_describe_object(d.classid, d.objid, 0) AS object, a.privilege_type
    FROM pg_depend d
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'doctrove_embed'
    LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
    LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
    LEFT JOIN pg_namespace n ON d.classid = 'pg_namespace'::regclass AND n.oid = d.objid
    CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner), c.relacl, acldefault('r', c.relowner),
                                           n.nspacl, acldefault('n', n.nspowner))) a
    WHERE d.deptype = 'e' AND a.grantee = 0
    ORDER BY 1, 2";

#[test]
fn public_may_read_the_views_call_input_text_and_the_job_functions_and_nothing_else() {
    let db = TestDb::new("sec_public");
    let mut client = db.connect();
    let granted: Vec<(String, String)> = client
        .query(PUBLIC_GRANTS, &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // The job functions check the caller themselves: only a table's owner defines, changes or
    // grants a job on it, a job runs for the roles it is granted to, the view shows each role
    // the jobs it may run (a_role_gains_no_job_on_another_role_s_table, tests/pg_regress).
    let allowed = [
        (
            "function doctrove_embed.alter_job(text,text,text,text,text,text,integer,text,text,integer,integer,boolean,boolean,text[],text,text)",
            "EXECUTE",
        ),
        ("function doctrove_embed.batch_snapshot()", "EXECUTE"),
        ("function doctrove_embed.cancel_batches(text)", "EXECUTE"),
        ("function doctrove_embed.collect_batches(text)", "EXECUTE"),
        ("function doctrove_embed.create_hnsw_index(text)", "EXECUTE"),
        ("function doctrove_embed.create_pending_index(text)", "EXECUTE"),
        ("function doctrove_embed.drop_job(text)", "EXECUTE"),
        ("function doctrove_embed.grant_job(text,text)", "EXECUTE"),
        ("function doctrove_embed.input_text(text,text)", "EXECUTE"),
        ("function doctrove_embed.input_text(text,text,text)", "EXECUTE"),
        ("function doctrove_embed.job_snapshot()", "EXECUTE"),
        ("function doctrove_embed.pause_job(text)", "EXECUTE"),
        ("function doctrove_embed.pending_index_command(text)", "EXECUTE"),
        ("function doctrove_embed.query_cache_snapshot()", "EXECUTE"),
        // The watch triggers' functions: CREATE TRIGGER needs EXECUTE on them, and SQL cannot
        // call them otherwise (a_role_gains_no_job_on_another_role_s_table: a table's owner
        // that is no superuser watches its job's column).
        ("function doctrove_embed.reset_embedding()", "EXECUTE"),
        ("function doctrove_embed.resume_job(text)", "EXECUTE"),
        ("function doctrove_embed.retry_failed(text)", "EXECUTE"),
        ("function doctrove_embed.revoke_job(text,text)", "EXECUTE"),
        ("function doctrove_embed.status_snapshot()", "EXECUTE"),
        ("function doctrove_embed.submit_backfill(bigint,text)", "EXECUTE"),
        ("function doctrove_embed.submit_batches(bigint,text)", "EXECUTE"),
        ("function doctrove_embed.unwatch(text)", "EXECUTE"),
        ("function doctrove_embed.use_job_for_search(text)", "EXECUTE"),
        ("function doctrove_embed.wake_workers()", "EXECUTE"),
        ("function doctrove_embed.watch(text)", "EXECUTE"),
        ("function doctrove_embed.worker_snapshot()", "EXECUTE"),
        ("function embed_pending(integer,text)", "EXECUTE"),
        ("function get_papers_needing_embeddings_count(text)", "EXECUTE"),
        ("schema doctrove_embed", "USAGE"),
        // Row policy: each role sees the claims of the tables it may read (tests/batch_api.rs).
        ("table doctrove_embed.batch_papers", "SELECT"),
        ("view doctrove_embed.jobs", "SELECT"),
        ("view doctrove_embed.status", "SELECT"),
        ("view doctrove_embed.workers", "SELECT"),
    ];
    let objects: Vec<String> = client
        .query(
            "SELECT pg_describe_object(classid, objid, 0) FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid \
             WHERE e.extname = 'doctrove_embed' AND d.deptype = 'e' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(objects.len() >= 15, "{objects:?}");
    for object in &objects {
        let extra: Vec<&(String, String)> = granted
            .iter()
            .filter(|(o, p)| o == object && !allowed.contains(&(o.as_str(), p.as_str())))
            .collect();
        record_attack(&format!("PUBLIC on {object}"), !extra.is_empty());
    }
    let expected: Vec<(String, String)> = allowed.iter().map(|(o, p)| (o.to_string(), p.to_string())).collect();
    assert_eq!(granted, expected);
}

#[test]
fn a_100_mb_single_token_text_costs_bounded_time_and_memory() {
    let db = TestDb::new("sec_huge_text");
    let mut writer = db.connect();
    create_papers(
        &mut writer,
        "vector(8)",
        "VALUES (1, 'One long word', repeat('x', 100000000), NULL)",
    );
    drop(writer);
    let mut client = db.connect();
    db.point_at_mock(&mut client, "dim=8/");
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let peak_kb = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let before_kb = peak_kb();
    let start = Instant::now();
    let done: i32 = client
        .query_one("SELECT successful_embeddings FROM embed_pending(10)", &[])
        .unwrap()
        .get(0);
    let took = start.elapsed();
    let after_kb = peak_kb();
    let sent_tokens = db.stats()["tokens"].as_u64().unwrap();
    println!("100 MB text: embedded in {took:?}, backend peak {before_kb} kB before, {after_kb} kB after, {sent_tokens} mock tokens sent");
    // The text read is at most 8,191 x 16 bytes; the mock counts a token per 4 bytes.
    let worked =
        done != 1 || took > Duration::from_secs(10) || after_kb > before_kb + 128 * 1024 || sent_tokens > 131_056 / 4 + 8;
    record_attack("a 100 MB single-token text", worked);
    assert_eq!(done, 1);
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        after_kb <= before_kb + 128 * 1024,
        "the backend's peak grew from {before_kb} kB to {after_kb} kB"
    );
    assert!(sent_tokens <= 131_056 / 4 + 8, "{sent_tokens}");
}

#[test]
fn oversized_batches_and_neighbour_counts_are_refused_before_any_request() {
    let db = TestDb::new("sec_oversized");
    let mut client = db.connect();
    create_papers(&mut client, "vector(1536)", "VALUES (1, 'A paper', NULL, NULL)");
    client
        .batch_execute(
            "CREATE TABLE loose (LIKE doctrove_papers INCLUDING ALL);
             ALTER TABLE loose ALTER doctrove_embedding TYPE vector;
             INSERT INTO loose VALUES (1, 'A paper', NULL, NULL);",
        )
        .unwrap();
    let attempts = [
        (
            "embed_pending(200000) into vector(1536)",
            "SELECT * FROM embed_pending(200000)",
            "",
        ),
        (
            "embed_pending(20000) into a vector of any length",
            "SELECT * FROM embed_pending(20000)",
            "loose",
        ),
        (
            "similar_papers with k = 1000000",
            "SELECT * FROM doctrove_embed.similar_papers('1', 1000000)",
            "",
        ),
        (
            "search with k = 1000000",
            "SELECT * FROM doctrove_embed.search('a query', 1000000)",
            "",
        ),
        ("search with k = 0", "SELECT * FROM doctrove_embed.search('a query', 0)", ""),
    ];
    for (name, sql, table) in attempts {
        let table = if table.is_empty() { "doctrove_papers" } else { table };
        client
            .execute("SELECT set_config('doctrove_embed.table', $1, false)", &[&table])
            .unwrap();
        let outcome = client.query(sql, &[]);
        let code = outcome.as_ref().err().and_then(|e| e.code()).map(|c| c.code().to_string());
        let worked = code.as_deref() != Some("22023");
        record_attack(name, worked);
        assert_eq!(code.as_deref(), Some("22023"), "{name}: {outcome:?}");
    }
    assert_eq!(db.stats()["requests"], 0, "no request was sent");
}

#[test]
fn nobody_but_the_server_s_user_reads_the_key_file() {
    let db = TestDb::new("sec_key_file");
    let mut client = db.connect();
    create_papers(&mut client, "vector(8)", "VALUES (1, 'Keyed', NULL, NULL)");
    let path = format!("/tmp/doctrove_embed_sec_key_{}", std::process::id());
    std::fs::write(&path, "sk-from-a-readable-file\n").unwrap();
    // Owned by root and readable by everyone: refused, and no request carries the key.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    db.point_at_mock(&mut client, "dim=8/");
    client
        .batch_execute(&format!(
            "SET doctrove_embed.api_key = ''; SET doctrove_embed.api_key_file = '{path}'"
        ))
        .unwrap();
    let outcome = client.query("SELECT * FROM embed_pending(5)", &[]);
    std::fs::remove_file(&path).unwrap();
    let code = outcome.as_ref().err().and_then(|e| e.code()).map(|c| c.code().to_string());
    let worked = code.as_deref() != Some("F0000") || db.stats()["requests"] != 0;
    record_attack("a key file other users can read", worked);
    assert_eq!(code.as_deref(), Some("F0000"), "{outcome:?}");
    assert_eq!(db.stats()["requests"], 0);
}

#[test]
fn a_database_owner_cannot_steer_a_superuser_s_embed_pending_into_a_trap_table() {
    let db = TestDb::new("sec_db_setting");
    let owner_role = "sec_db_owner";
    let mut admin = connect_as("postgres", &db.name);
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {owner_role}; CREATE ROLE {owner_role} LOGIN;
             ALTER DATABASE {} OWNER TO {owner_role}; GRANT CREATE ON SCHEMA public TO {owner_role};",
            db.name
        ))
        .unwrap();
    let mut owner = connect_as(owner_role, &db.name);
    owner
        .batch_execute(&format!(
            "CREATE TABLE public.trap (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text,
                 doctrove_abstract text, doctrove_embedding vector(8));
             INSERT INTO public.trap SELECT g, 'Trap ' || g, NULL, NULL FROM generate_series(1, 5) g;
             CREATE FUNCTION public.escalate() RETURNS trigger LANGUAGE plpgsql AS
                 $$BEGIN BEGIN EXECUTE 'ALTER ROLE {owner_role} SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END; RETURN NEW; END$$;
             CREATE TRIGGER escalate BEFORE UPDATE ON public.trap FOR EACH ROW EXECUTE FUNCTION public.escalate();
             ALTER DATABASE {} SET doctrove_embed.\"table\" = 'public.trap';",
            db.name
        ))
        .unwrap();
    // The superuser's next session (a pg_cron job's, say) starts with the database's settings.
    let mut su = connect_as("postgres", &db.name);
    let url = format!("{}/s={}/dim=8/v1", mock_root(), db.scope);
    su.execute(
        "SELECT pg_catalog.set_config('doctrove_embed.api_base_url', $1, false)",
        &[&url],
    )
    .unwrap();
    let outcome = su.query("SELECT * FROM embed_pending(10)", &[]);
    let code = outcome.as_ref().err().and_then(|e| e.code()).map(|c| c.code().to_string());
    let escalated = is_superuser(&mut admin, owner_role);
    let requests = mock_stats(&db.scope)["requests"].as_u64().unwrap_or(0);
    record_attack(
        "choose a superuser's table through ALTER DATABASE ... SET doctrove_embed.table, run its trigger as superuser",
        escalated || requests > 0,
    );
    assert_eq!(code.as_deref(), Some("42501"), "{outcome:?}");
    assert!(!escalated);
    assert_eq!(requests, 0);
    let written: i64 = admin
        .query_one("SELECT count(doctrove_embedding) FROM public.trap", &[])
        .unwrap()
        .get(0);
    assert_eq!(written, 0);
}

#[test]
fn a_role_without_rights_on_a_table_cannot_cancel_or_collect_its_batches() {
    let db = TestDb::new("sec_cancel");
    let mut owner = db.connect();
    db.point_at_mock(&mut owner, "dim=8/batch_delay=60000/");
    create_papers(
        &mut owner,
        "vector(8)",
        "SELECT g, 'Paper ' || g, NULL FROM generate_series(1, 20) g",
    );
    let batches: i32 = owner
        .query_one("SELECT batches FROM doctrove_embed.submit_batches()", &[])
        .unwrap()
        .get(0);
    assert_eq!(batches, 1);
    let eve = "sec_eve";
    owner
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {eve}; CREATE ROLE {eve} LOGIN;
             GRANT USAGE ON SCHEMA doctrove_embed TO {eve};
             GRANT EXECUTE ON FUNCTION doctrove_embed.cancel_batches(), doctrove_embed.collect_batches(),
                 doctrove_embed.submit_batches(bigint), doctrove_embed.retry_failed() TO {eve};
             ALTER ROLE {eve} SET doctrove_embed.api_base_url = '{}/s={}/dim=8/batch_delay=60000/v1';",
            mock_root(),
            db.scope
        ))
        .unwrap();
    let mut attacker = connect_as(eve, &db.name);
    attacker
        .batch_execute("SET doctrove_embed.\"table\" = 'public.doctrove_papers'")
        .unwrap();
    let mut codes = Vec::new();
    for call in [
        "SELECT doctrove_embed.cancel_batches()",
        "SELECT * FROM doctrove_embed.collect_batches()",
        "SELECT * FROM doctrove_embed.submit_batches()",
        "SELECT doctrove_embed.retry_failed()",
    ] {
        let outcome = attacker.query(call, &[]);
        codes.push(outcome.as_ref().err().and_then(|e| e.code()).map(|c| c.code().to_string()));
    }
    let stats = mock_stats(&db.scope);
    let cancelled = stats["batches_cancelled"].as_u64().unwrap_or(0);
    let open: i64 = owner
        .query_one("SELECT count(*) FROM doctrove_embed.batches WHERE open", &[])
        .unwrap()
        .get(0);
    record_attack(
        "cancel (or collect, submit, forget the failures of) another role's table through the Batch API functions",
        cancelled > 0 || open != 1,
    );
    assert!(codes.iter().all(|c| c.as_deref() == Some("42501")), "{codes:?}");
    assert_eq!((cancelled, open), (0, 1));
    assert_eq!(stats["batches_created"].as_u64(), Some(1));
    // The owner still may: one batch cancelled on the API.
    assert_eq!(
        owner
            .query_one("SELECT doctrove_embed.cancel_batches()", &[])
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    assert_eq!(mock_stats(&db.scope)["batches_cancelled"].as_u64(), Some(1));
}

#[test]
fn a_table_owner_gains_nothing_through_worker_0_s_batches() {
    let scope = format!("security-batches-{}", std::process::id());
    let cluster = Cluster::start(
        "security_batches",
        &[
            "shared_preload_libraries = 'doctrove_embed'".to_string(),
            "doctrove_embed.database = 'postgres'".to_string(),
            "doctrove_embed.workers = 1".to_string(),
            "doctrove_embed.enabled = off".to_string(),
            "doctrove_embed.naptime_ms = 500".to_string(),
            "doctrove_embed.batch_api = on".to_string(),
            "doctrove_embed.batch_api_min_papers = 0".to_string(),
            "doctrove_embed.batch_api_poll_ms = 300".to_string(),
            format!("doctrove_embed.api_base_url = '{}/s={scope}/dim=8/v1'", mock_root()),
            "doctrove_embed.api_key = 'sk-security-batches'".to_string(),
        ],
    );
    let mut admin = cluster.connect();
    admin
        .batch_execute(
            "CREATE EXTENSION doctrove_embed CASCADE; CREATE ROLE mallory LOGIN; ALTER DATABASE postgres OWNER TO mallory;",
        )
        .unwrap();
    let mut mallory = postgres::Client::connect(
        &format!("host=127.0.0.1 port={} user=mallory dbname=postgres", cluster.port),
        postgres::NoTls,
    )
    .unwrap();
    mallory.batch_execute(OWNER_TRAPS).unwrap();
    for statement in [
        "SELECT doctrove_embed.create_pending_index()",
        "ALTER SYSTEM SET doctrove_embed.enabled = on",
        "SELECT pg_reload_conf()",
    ] {
        admin.batch_execute(statement).unwrap();
    }
    wait_for(
        "worker 0 to collect every paper of its batches",
        Duration::from_secs(90),
        || {
            let embedded: i64 = admin
                .query_one("SELECT count(doctrove_embedding) FROM public.doctrove_papers", &[])
                .ok()?
                .get(0);
            (embedded == 40).then_some(())
        },
    );
    let stats = mock_stats(&scope);
    assert_eq!(
        counters(&stats, ["batch_inputs", "inputs"]),
        [40, 0],
        "every paper went through the Batch API: {stats}"
    );
    let attempts: Vec<(String, String, bool)> = admin
        .query("SELECT kind, run_as, superuser_after FROM public.attempts ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let fired: Vec<_> = attempts.iter().filter(|(kind, _, _)| kind == "trigger").collect();
    assert!(
        !fired.is_empty(),
        "the table's trigger never ran in the collection: the test proves nothing"
    );
    let worked = is_superuser(&mut admin, "mallory") || attempts.iter().any(|(_, run_as, after)| run_as != "mallory" || *after);
    record_attack(
        "worker 0's Batch API collection runs the table owner's trigger, check and index expression",
        worked,
    );
    assert!(!worked, "{attempts:?}");
}

/// The rows `attempts` holds: (kind, role it ran as, whether the owner became a superuser).
fn attempts(client: &mut Client) -> Vec<(String, String, bool)> {
    client
        .query("SELECT kind, run_as, superuser_after FROM public.attempts ORDER BY 1, 2", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[test]
fn a_table_owner_gains_nothing_through_a_superuser_s_embed_pending() {
    let db = TestDb::new("sec_su_session");
    let owner_role = "sec_trap_owner";
    let mut admin = db.connect();
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {owner_role}; CREATE ROLE {owner_role} LOGIN;
             DROP ROLE IF EXISTS mallory; CREATE ROLE mallory;
             GRANT CREATE ON SCHEMA public TO {owner_role};
             GRANT EXECUTE ON FUNCTION doctrove_embed.create_job(text, text, text, text, text, text, text, integer, text, text, integer, integer, boolean, boolean, text[], text, text) TO {owner_role};"
        ))
        .unwrap();
    let mut owner = connect_as(owner_role, &db.name);
    owner.batch_execute(OWNER_TRAPS).unwrap();
    owner
        .batch_execute(
            "ALTER TABLE public.doctrove_papers ADD COLUMN local_embedding vector(8);
             SELECT doctrove_embed.create_job('trap_job', 'public.doctrove_papers', 'local_embedding', 'm', batch_size => 10);",
        )
        .unwrap();
    // The superuser (a pg_cron job, say) runs the job default (the settings name the owner's
    // table), counts it, and runs the owner's job.
    db.point_at_mock(&mut admin, "dim=8/");
    let default_run = admin.query_one("SELECT successful_embeddings FROM embed_pending(10)", &[]);
    let counted = admin.query_one("SELECT get_papers_needing_embeddings_count()", &[]);
    let job_run = admin.query_one("SELECT successful_embeddings FROM embed_pending(10, 'trap_job')", &[]);
    let runs = attempts(&mut admin);
    let escalated = is_superuser(&mut admin, "mallory") || runs.iter().any(|(_, who, su)| who != owner_role || *su);
    record_attack(
        "a table owner's trigger, index expression and check run by a superuser's embed_pending() (the job default and a recorded job)",
        escalated,
    );
    assert_eq!(default_run.unwrap().get::<_, i32>(0), 10);
    assert_eq!(counted.unwrap().get::<_, i64>(0), 30);
    assert_eq!(job_run.unwrap().get::<_, i32>(0), 10);
    assert!(!escalated, "{runs:?}");
    let kinds: std::collections::BTreeSet<String> = runs.iter().map(|(k, _, _)| k.clone()).collect();
    assert!(
        kinds.contains("trigger") && kinds.contains("check constraint"),
        "the traps did not run: {runs:?}"
    );
}

#[test]
fn a_role_gains_no_job_on_another_role_s_table() {
    let db = TestDb::new("sec_job_rights");
    let mut admin = db.connect();
    admin
        .batch_execute(
            "DROP ROLE IF EXISTS sec_job_victim; CREATE ROLE sec_job_victim;
             DROP ROLE IF EXISTS sec_job_thief; CREATE ROLE sec_job_thief LOGIN;
             -- The thief may define jobs (on its own tables): the owner check is what stops it.
             GRANT EXECUTE ON FUNCTION doctrove_embed.create_job(text, text, text, text, text, text, text, integer, text, text, integer, integer, boolean, boolean, text[], text, text) TO sec_job_thief, sec_job_victim;
             CREATE TABLE public.victim (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text,
                 doctrove_abstract text, doctrove_embedding vector(8), spare vector(8));
             INSERT INTO public.victim SELECT g, 'Secret ' || g, NULL FROM generate_series(1, 5) g;
             ALTER TABLE public.victim OWNER TO sec_job_victim;
             SET ROLE sec_job_victim;
             SELECT doctrove_embed.create_job('victim_job', 'public.victim', 'doctrove_embedding', 'm');
             -- The owner, no superuser, watches its job's column.
             SELECT doctrove_embed.watch('victim_job');
             RESET ROLE;
             -- Papers the victim's job gave up on, and one of the settings' job.
             INSERT INTO doctrove_embed.failures (relid, paper_id, attempts, job)
             VALUES ('public.victim', '1', 3, 'victim_job'), ('public.victim', '2', 3, 'default');",
        )
        .unwrap();
    // The base URL is the superuser's to set: for the thief's sessions, this test's scope.
    let url = format!("{}/s={}/dim=8/v1", mock_root(), db.scope);
    admin
        .batch_execute(&format!(
            "ALTER ROLE sec_job_thief IN DATABASE {} SET doctrove_embed.api_base_url = '{url}'",
            db.name
        ))
        .unwrap();
    let mut thief = connect_as("sec_job_thief", &db.name);
    let mut outcomes = Vec::new();
    for (name, sql) in [
        (
            "define a job on another role's table",
            "SELECT doctrove_embed.create_job('stolen', 'public.victim', 'spare', 'm')",
        ),
        ("run a job not granted", "SELECT * FROM embed_pending(5, 'victim_job')"),
        (
            "count a job not granted",
            "SELECT get_papers_needing_embeddings_count('victim_job')",
        ),
        (
            "grant oneself another role's job",
            "SELECT doctrove_embed.grant_job('victim_job', 'sec_job_thief')",
        ),
        (
            "repoint another role's job",
            "SELECT doctrove_embed.alter_job('victim_job', embedding_column => 'spare')",
        ),
        ("drop another role's job", "SELECT doctrove_embed.drop_job('victim_job')"),
        (
            "switch another role's searches",
            "SELECT doctrove_embed.use_job_for_search('victim_job')",
        ),
        (
            "index another role's job column",
            "SELECT doctrove_embed.create_hnsw_index('victim_job')",
        ),
        (
            "put triggers on another role's table through its job",
            "SELECT doctrove_embed.watch('victim_job')",
        ),
        (
            "take another role's watch triggers off its table",
            "SELECT doctrove_embed.unwatch('victim_job')",
        ),
        (
            "put triggers on the settings' table through the form with a job name",
            "SELECT doctrove_embed.watch('default')",
        ),
        (
            "index the settings' table through the form with a job name",
            "SELECT doctrove_embed.create_hnsw_index('default')",
        ),
        (
            "make another role's job pay again for the papers it gave up on",
            "SELECT doctrove_embed.retry_failed('victim_job')",
        ),
        (
            "forget the job default's rejected papers through the form with a job name",
            "SELECT doctrove_embed.retry_failed('default')",
        ),
        (
            "write the job catalog",
            "INSERT INTO doctrove_embed.job_grants VALUES ('victim_job', 'sec_job_thief', 'x')",
        ),
    ] {
        let outcome = thief.batch_execute(sql);
        let code = outcome.as_ref().err().and_then(|e| e.code()).map(|c| c.code().to_string());
        record_attack(name, code.as_deref() != Some("42501"));
        outcomes.push((name, code));
    }
    assert!(
        outcomes.iter().all(|(_, code)| code.as_deref() == Some("42501")),
        "{outcomes:?}"
    );
    assert_eq!(db.stats()["requests"], 0);
    let written: i64 = admin
        .query_one("SELECT count(doctrove_embedding) + count(spare) FROM public.victim", &[])
        .unwrap()
        .get(0);
    assert_eq!(written, 0);
    let failures: i64 = admin
        .query_one("SELECT count(*) FROM doctrove_embed.failures", &[])
        .unwrap()
        .get(0);
    assert_eq!(failures, 2, "a rejected paper was forgotten");
    let triggers: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.victim'::regclass AND NOT tgisinternal",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(triggers, 2, "the owner's watch triggers are not both there");
}

#[test]
fn a_granted_role_gains_nothing_from_temporary_objects_or_a_change_of_owner() {
    let db = TestDb::new("sec_job_grantee");
    let mut admin = db.connect();
    let create_job = "doctrove_embed.create_job(text, text, text, text, text, text, text, integer, text, text, integer, integer, boolean, boolean, text[], text, text)";
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS sec_grant_owner; CREATE ROLE sec_grant_owner;
             DROP ROLE IF EXISTS sec_grantee; CREATE ROLE sec_grantee LOGIN;
             GRANT EXECUTE ON FUNCTION {create_job} TO sec_grant_owner, sec_grantee;
             CREATE TABLE public.owned (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text,
                 doctrove_abstract text, doctrove_embedding vector(8));
             INSERT INTO public.owned SELECT g, 'Owned ' || g, NULL FROM generate_series(1, 5) g;
             CREATE TABLE public.audit_log (who text);
             -- The owner's trigger leaves one name unqualified (and tolerates its absence).
             CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql AS
                 $$BEGIN BEGIN INSERT INTO audit_log VALUES (current_user); EXCEPTION WHEN undefined_table THEN NULL; END; RETURN NEW; END$$;
             CREATE TRIGGER audit BEFORE UPDATE ON public.owned FOR EACH ROW EXECUTE FUNCTION public.audit();
             ALTER TABLE public.owned OWNER TO sec_grant_owner; ALTER TABLE public.audit_log OWNER TO sec_grant_owner;
             ALTER FUNCTION public.audit() OWNER TO sec_grant_owner;
             SET ROLE sec_grant_owner;
             SELECT doctrove_embed.create_job('owned_job', 'public.owned', 'doctrove_embedding', 'm');
             SELECT doctrove_embed.grant_job('owned_job', 'sec_grantee');
             RESET ROLE;
             CREATE TABLE public.escalations (who text, superuser boolean);
             GRANT INSERT ON public.escalations TO PUBLIC;
             GRANT CREATE ON SCHEMA public TO sec_grantee;",
        ))
        .unwrap();
    let url = format!("{}/s={}/dim=8/v1", mock_root(), db.scope);
    admin
        .batch_execute(&format!(
            "ALTER ROLE sec_grantee IN DATABASE {} SET doctrove_embed.api_base_url = '{url}'",
            db.name
        ))
        .unwrap();
    // The grantee shadows the unqualified name with a temporary table whose rule runs its own
    // code, hoping it runs as the table's owner.
    let mut grantee = connect_as("sec_grantee", &db.name);
    grantee
        .batch_execute(
            "CREATE FUNCTION public.grab() RETURNS boolean LANGUAGE plpgsql AS
                 $$BEGIN INSERT INTO public.escalations SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user; RETURN true; END$$;
             CREATE TEMPORARY TABLE audit_log (who text);
             CREATE RULE grab AS ON INSERT TO audit_log DO ALSO SELECT public.grab();",
        )
        .unwrap();
    let shadowed = grantee.batch_execute("SELECT * FROM embed_pending(5, 'owned_job')");
    let code = shadowed.as_ref().err().and_then(|e| e.code()).map(|c| c.code().to_string());
    let ran_as_owner: i64 = admin
        .query_one("SELECT count(*) FROM public.escalations WHERE who = 'sec_grant_owner'", &[])
        .unwrap()
        .get(0);
    record_attack(
        "a grantee's temporary table shadowing a name the owner's trigger leaves unqualified",
        ran_as_owner > 0 || code.as_deref() != Some("55000"),
    );
    assert_eq!(code.as_deref(), Some("55000"), "{shadowed:?}");
    assert_eq!(ran_as_owner, 0);

    // The table changes hands (to a superuser): the old owner's grant gives nothing.
    admin.batch_execute("ALTER TABLE public.owned OWNER TO postgres").unwrap();
    grantee.batch_execute("DISCARD TEMP").unwrap();
    let after_transfer = grantee.batch_execute("SELECT * FROM embed_pending(5, 'owned_job')");
    let code = after_transfer
        .as_ref()
        .err()
        .and_then(|e| e.code())
        .map(|c| c.code().to_string());
    record_attack(
        "a job granted by a table's previous owner, run after the table changed hands",
        code.as_deref() != Some("55000"),
    );
    assert_eq!(code.as_deref(), Some("55000"), "{after_transfer:?}");

    // Nor may the grantee take the reserved name default, whatever table it owns.
    grantee
        .batch_execute("CREATE TABLE public.mine (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text, e vector(8))")
        .unwrap();
    let takeover = grantee.batch_execute("SELECT doctrove_embed.create_job('default', 'public.mine', 'e', 'm')");
    let code = takeover.as_ref().err().and_then(|e| e.code()).map(|c| c.code().to_string());
    record_attack(
        "a recorded job named default, run by a superuser's embed_pending(250)",
        code.as_deref() != Some("42939"),
    );
    assert_eq!(code.as_deref(), Some("42939"), "{takeover:?}");
    assert_eq!(db.stats()["requests"], 0);
}
