//! Robustness: deterministic errors are not retried as if transient, rows the database refuses
//! do not stop a batch, no good paper is blamed, paid work is kept, numbers from the network
//! are bounded, and wake-ups and counts stay few with many workers. Figures are printed at the
//! end of `make test`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use doctrove_itest::cluster::{wait_for, Cluster};
use doctrove_itest::{cluster, connect_as, counters, embed_until_done, mock_root, record_figure, TestDb};
use postgres::{Client, NoTls};

/// A session on the test database that keeps the notices (WARNINGs) it receives.
fn connect_keeping_notices(db: &TestDb) -> (Client, Arc<Mutex<Vec<String>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let mut config: postgres::Config = format!("{} dbname={}", cluster(), db.name).parse().unwrap();
    let kept = Arc::clone(&notices);
    config.notice_callback(move |notice| {
        kept.lock()
            .unwrap()
            .push(format!("{}: {}", notice.code().code(), notice.message()))
    });
    let mut client = config.connect(NoTls).unwrap();
    db.point_at_mock(&mut client, "");
    (client, notices)
}

fn papers(client: &mut Client, dims: u32, n: i64) {
    client
        .batch_execute(&format!(
            "CREATE TABLE doctrove_papers (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text,
                 doctrove_abstract text, doctrove_embedding vector({dims}));
             INSERT INTO doctrove_papers SELECT g, 'Paper ' || g, 'Abstract of paper ' || g, NULL FROM generate_series(1, {n}) g;
             SELECT doctrove_embed.create_pending_index();"
        ))
        .unwrap();
}

fn sqlstate<T: std::fmt::Debug>(outcome: &Result<T, postgres::Error>) -> Option<String> {
    outcome.as_ref().err().and_then(|e| e.code()).map(|c| c.code().to_string())
}

fn count(client: &mut Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn a_dimension_mismatch_costs_two_requests_and_names_the_setting() {
    let db = TestDb::new("robust_dims");
    let mut client = db.connect();
    papers(&mut client, 8, 3);
    db.point_at_mock(&mut client, "dim=16/");
    let outcome = client.query("SELECT * FROM embed_pending(10)", &[]);
    let requests = db.stats()["requests"].as_u64().unwrap();
    record_figure(&format!(
        "vector(8) column, API answering 16 dimensions: {requests} requests, then {:?}",
        sqlstate(&outcome)
    ));
    assert_eq!(sqlstate(&outcome).as_deref(), Some("22023"), "{outcome:?}");
    let error = outcome.unwrap_err();
    let hint = error.as_db_error().unwrap().hint().unwrap_or("").to_string();
    assert!(hint.contains("doctrove_embed.dimensions"), "{hint}");
    assert_eq!(requests, 2, "one request and at most one retry");
    assert_eq!(count(&mut client, "SELECT count(doctrove_embedding) FROM doctrove_papers"), 0);
}

#[test]
fn an_api_that_refuses_everything_blames_no_paper_even_in_batches_of_one() {
    let db = TestDb::new("robust_refuses");
    let mut client = db.connect();
    papers(&mut client, 8, 5);
    db.point_at_mock(&mut client, "status=400/dim=8/");
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(sqlstate(&client.query("SELECT * FROM embed_pending(1)", &[])));
    }
    let blamed = count(&mut client, "SELECT count(*) FROM doctrove_embed.failures");
    let pending = count(&mut client, "SELECT get_papers_needing_embeddings_count()");
    record_figure(&format!(
        "an API refusing every request, 5 batches of 1: {blamed} papers blamed, {pending} still pending"
    ));
    assert!(codes.iter().all(|c| c.as_deref() == Some("22023")), "{codes:?}");
    assert_eq!(blamed, 0);
    assert_eq!(pending, 5);
}

#[test]
fn a_later_request_that_fails_keeps_the_vectors_already_paid_for() {
    let db = TestDb::new("robust_paid");
    let (mut client, notices) = connect_keeping_notices(&db);
    papers(&mut client, 8, 2);
    // One input a request, so the batch of two is two requests; the second is answered 401.
    client.batch_execute("SET doctrove_embed.max_tokens_per_request = 1").unwrap();
    db.point_at_mock(&mut client, "status=401/from=1/dim=8/");
    let row = client
        .query_one("SELECT successful_embeddings, failed_embeddings FROM embed_pending(10)", &[])
        .unwrap();
    let (written, failed): (i32, i32) = (row.get(0), row.get(1));
    let pending = count(&mut client, "SELECT get_papers_needing_embeddings_count()");
    let warnings = notices.lock().unwrap().clone();
    record_figure(&format!(
        "a 2-request batch whose second request gets 401: {written} written, {pending} pending, {failed} blamed, warning {:?}",
        warnings.iter().find(|w| w.starts_with("28000"))
    ));
    assert_eq!((written, failed, pending), (1, 0, 1));
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("28000: the embeddings API refused the API key")),
        "{warnings:?}"
    );
    let stored = count(
        &mut client,
        "SELECT count(*) FROM doctrove_papers WHERE doctrove_embedding IS NOT NULL",
    );
    assert_eq!(stored, 1);
}

#[test]
fn absurd_numbers_in_headers_change_nothing() {
    let db = TestDb::new("robust_absurd");
    let mut client = db.connect();
    papers(&mut client, 8, 40);
    db.point_at_mock(&mut client, "absurd=1/p429=0.3/dim=8/");
    client.batch_execute("SET doctrove_embed.max_retries = 20").unwrap();
    let start = Instant::now();
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(sqlstate(&client.query("SELECT * FROM embed_pending(10)", &[])));
    }
    let embedded = count(&mut client, "SELECT count(doctrove_embedding) FROM doctrove_papers");
    record_figure(&format!(
        "retry-after: 1e400, x-ratelimit-* inf/NaN/-5 on every answer, 30% 429: {embedded} of 40 embedded in {:.1} s, errors {:?}",
        start.elapsed().as_secs_f64(),
        codes.iter().flatten().collect::<Vec<_>>()
    ));
    assert!(codes.iter().all(Option::is_none), "no error, no XX000: {codes:?}");
    assert_eq!(embedded, 40);
}

/// A cluster with `workers` background workers on the mock, started disabled.
fn worker_cluster(name: &str, workers: u32, scope: &str) -> Cluster {
    Cluster::start(
        name,
        &[
            "shared_preload_libraries = 'doctrove_embed'".to_string(),
            "max_worker_processes = 32".to_string(),
            "doctrove_embed.database = 'postgres'".to_string(),
            format!("doctrove_embed.workers = {workers}"),
            "doctrove_embed.enabled = off".to_string(),
            "doctrove_embed.naptime_ms = 600000".to_string(),
            format!("doctrove_embed.api_base_url = '{}/s={scope}/dim=8/v1'", mock_root()),
            "doctrove_embed.api_key = 'sk-robustness'".to_string(),
        ],
    )
}

fn enable(client: &mut Client) {
    client.batch_execute("ALTER SYSTEM SET doctrove_embed.enabled = on").unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
}

#[test]
fn a_row_the_database_refuses_is_recorded_and_the_other_999_are_written() {
    let scope = format!("robust-refused-{}", std::process::id());
    let cluster = worker_cluster("robust_refused", 1, &scope);
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION doctrove_embed CASCADE").unwrap();
    papers(&mut client, 8, 1000);
    client
        .batch_execute(
            "CREATE FUNCTION refuse_500() RETURNS trigger LANGUAGE plpgsql AS
                 $$BEGIN RAISE EXCEPTION 'paper 500 may not be embedded' USING ERRCODE = 'check_violation'; END$$;
             CREATE TRIGGER refuse_500 BEFORE UPDATE ON doctrove_papers FOR EACH ROW
                 WHEN (NEW.doctrove_paper_id = 500) EXECUTE FUNCTION refuse_500();",
        )
        .unwrap();
    let pid_before: i32 = wait_for("the worker to start", Duration::from_secs(30), || {
        let pid: i32 = client.query_one("SELECT pid FROM doctrove_embed.workers", &[]).ok()?.get(0);
        (pid != 0).then_some(pid)
    });
    enable(&mut client);
    wait_for("999 papers written and 1 recorded", Duration::from_secs(60), || {
        let written = count(&mut client, "SELECT count(doctrove_embedding) FROM doctrove_papers");
        let failed = count(&mut client, "SELECT count(*) FROM doctrove_embed.failures");
        (written == 999 && failed == 1).then_some(())
    });
    let (paper, error): (String, String) = {
        let row = client
            .query_one("SELECT paper_id, last_error FROM doctrove_embed.failures", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    let pid_after: i32 = client
        .query_one("SELECT pid FROM doctrove_embed.workers", &[])
        .unwrap()
        .get(0);
    record_figure(&format!(
        "a refused row among 1,000: 999 written, paper {paper} in failures ({error}), worker pid {pid_before} -> {pid_after}"
    ));
    assert_eq!(paper, "500");
    assert!(
        error.contains("23514") && error.contains("paper 500 may not be embedded"),
        "{error}"
    );
    assert_eq!(pid_before, pid_after, "the worker never exited");
}

#[test]
fn a_thousand_single_row_commits_wake_sixteen_workers_without_a_count_storm() {
    let scope = format!("robust-storm-{}", std::process::id());
    let cluster = worker_cluster("robust_storm", 16, &scope);
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION doctrove_embed CASCADE").unwrap();
    papers(&mut client, 8, 0);
    client.batch_execute("SELECT doctrove_embed.watch()").unwrap();
    enable(&mut client);
    wait_for("16 idle workers", Duration::from_secs(30), || {
        (count(
            &mut client,
            "SELECT count(*) FROM doctrove_embed.workers WHERE state = 'idle'",
        ) == 16)
            .then_some(())
    });
    let log_before = cluster.log().len();
    let start = Instant::now();
    for id in 1..=1000i64 {
        client
            .execute(
                "INSERT INTO doctrove_papers (doctrove_paper_id, doctrove_title, doctrove_abstract) VALUES ($1::bigint, 'Paper ' || $1::bigint::text, 'Abstract')",
                &[&id],
            )
            .unwrap();
    }
    wait_for("every paper embedded", Duration::from_secs(60), || {
        (count(&mut client, "SELECT count(doctrove_embedding) FROM doctrove_papers") == 1000).then_some(())
    });
    let took = start.elapsed();
    let log = cluster.log()[log_before..].to_string();
    let counts = log.matches("papers needing embeddings").count();
    let lines = log.lines().filter(|l| l.contains("doctrove_embed worker")).count();
    record_figure(&format!(
        "16 workers, 1,000 single-row commits into a watched table: all embedded in {:.1} s, {counts} counts logged, {lines} worker log lines",
        took.as_secs_f64()
    ));
    assert!(counts <= 10, "{counts} counts");
    assert!(lines <= 400, "{lines} log lines");
}

#[test]
fn a_worker_waiting_to_retry_says_so() {
    let scope = format!("robust-retrying-{}", std::process::id());
    let cluster = Cluster::start(
        "robust_retrying",
        &[
            "shared_preload_libraries = 'doctrove_embed'".to_string(),
            "doctrove_embed.database = 'postgres'".to_string(),
            "doctrove_embed.workers = 1".to_string(),
            "doctrove_embed.naptime_ms = 600000".to_string(),
            format!(
                "doctrove_embed.api_base_url = '{}/s={scope}/status=503/dim=8/v1'",
                mock_root()
            ),
            "doctrove_embed.api_key = 'sk-robustness'".to_string(),
        ],
    );
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION doctrove_embed CASCADE").unwrap();
    papers(&mut client, 8, 5);
    client
        .batch_execute("SELECT doctrove_embed.watch(); INSERT INTO doctrove_papers VALUES (6, 'Wake', NULL, NULL)")
        .unwrap();
    let (state, last_error, activity): (String, String, String) = wait_for("a retrying worker", Duration::from_secs(30), || {
        let row = client
            .query_one(
                "SELECT w.state, w.last_error, a.query FROM doctrove_embed.workers w JOIN pg_stat_activity a USING (pid)",
                &[],
            )
            .ok()?;
        let state: String = row.get(0);
        state
            .starts_with("retrying after HTTP 503, attempt 3 of 7")
            .then(|| (state, row.get(1), row.get(2)))
    });
    record_figure(&format!("a worker waiting to retry: state {state:?}"));
    assert!(state.contains(", next in ") && state.ends_with(" s"), "{state}");
    assert!(last_error.contains("HTTP 503"), "{last_error}");
    assert!(activity.contains("retrying after HTTP 503, attempt 3 of 7"), "{activity}");
}

/// A role of the test cluster, created afresh, that logs in and whose sessions use the mock
/// under `scope` with 8 dimensions (set by the superuser: the base URL is superuser-only).
fn embedding_role(admin: &mut Client, role: &str, scope: &str) {
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN;
             ALTER ROLE {role} SET doctrove_embed.api_base_url = '{}/s={scope}/dim=8/v1';",
            mock_root()
        ))
        .unwrap();
}

#[test]
fn a_role_that_may_not_write_every_column_pays_nothing_and_blames_no_paper() {
    let db = TestDb::new("robust_least_privilege");
    let mut admin = connect_as("postgres", &db.name);
    embedding_role(&mut admin, "lp_embedder", &db.scope);
    admin
        .batch_execute(
            "CREATE TABLE doctrove_papers (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text,
                 doctrove_abstract text, doctrove_embedding vector(8), updated_at timestamptz,
                 embedding_model_version text);
             INSERT INTO doctrove_papers SELECT g, 'Paper ' || g, NULL, NULL FROM generate_series(1, 10) g;
             SELECT doctrove_embed.create_pending_index();
             GRANT SELECT, UPDATE (doctrove_embedding) ON doctrove_papers TO lp_embedder;
             GRANT EXECUTE ON FUNCTION embed_pending(integer), doctrove_embed.submit_batches(bigint),
                 doctrove_embed.collect_batches() TO lp_embedder;",
        )
        .unwrap();
    let mut embedder = connect_as("lp_embedder", &db.name);
    for _ in 0..3 {
        let outcome = embedder.query("SELECT * FROM embed_pending(10)", &[]);
        assert_eq!(sqlstate(&outcome).as_deref(), Some("42501"), "{outcome:?}");
        let message = outcome.unwrap_err().as_db_error().unwrap().message().to_string();
        assert!(
            message.contains("updated_at, embedding_model_version") || message.contains("embedding_model_version, updated_at"),
            "{message}"
        );
    }
    for call in [
        "SELECT * FROM doctrove_embed.submit_batches()",
        "SELECT * FROM doctrove_embed.collect_batches()",
    ] {
        assert_eq!(sqlstate(&embedder.query(call, &[])).as_deref(), Some("42501"), "{call}");
    }
    let stats = db.stats();
    let blamed = count(&mut admin, "SELECT count(*) FROM doctrove_embed.failures");
    record_figure(&format!(
        "a role allowed to update the embedding but not updated_at nor the model column: 42501 before any request, {} inputs paid, {blamed} papers blamed",
        stats["inputs"]
    ));
    assert_eq!(counters(&stats, ["requests", "batch_files_uploaded"]), [0, 0], "{stats}");
    assert_eq!(blamed, 0);
    // With the two columns granted, the same role embeds all ten.
    admin
        .batch_execute("GRANT UPDATE (updated_at, embedding_model_version) ON doctrove_papers TO lp_embedder")
        .unwrap();
    let done: i32 = embedder
        .query_one("SELECT successful_embeddings FROM embed_pending(10)", &[])
        .unwrap()
        .get(0);
    assert_eq!(done, 10);
    let first: Vec<f32> = admin
        .query_one(
            "SELECT doctrove_embedding::real[] FROM doctrove_papers WHERE doctrove_paper_id = 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(first, doctrove_mock::vector_for("Title: Paper 1", 8));
    assert_eq!(count(&mut admin, "SELECT count(doctrove_embedding) FROM doctrove_papers"), 10);
}

#[test]
fn a_fault_of_the_database_ends_the_batch_and_blames_no_paper() {
    let db = TestDb::new("robust_db_fault");
    let mut client = db.connect();
    papers(&mut client, 8, 20);
    db.point_at_mock(&mut client, "dim=8/");
    // One row's update meets what the database, not the paper, causes: a lock not available,
    // then a full disk (raised by a trigger with those SQLSTATEs, as the server would).
    for (code, what) in [("55P03", "lock_not_available"), ("53100", "disk_full")] {
        client
            .batch_execute(&format!(
                "CREATE OR REPLACE FUNCTION fault() RETURNS trigger LANGUAGE plpgsql AS
                     $$BEGIN RAISE EXCEPTION 'simulated {what}' USING ERRCODE = '{code}'; END$$;
                 DROP TRIGGER IF EXISTS fault ON doctrove_papers;
                 CREATE TRIGGER fault BEFORE UPDATE ON doctrove_papers FOR EACH ROW
                     WHEN (NEW.doctrove_paper_id = 7) EXECUTE FUNCTION fault();"
            ))
            .unwrap();
        let outcome = client.query("SELECT * FROM embed_pending(20)", &[]);
        assert_eq!(sqlstate(&outcome).as_deref(), Some(code), "{outcome:?}");
        assert_eq!(
            count(&mut client, "SELECT count(*) FROM doctrove_embed.failures"),
            0,
            "{code} blamed a paper"
        );
        assert_eq!(count(&mut client, "SELECT count(doctrove_embedding) FROM doctrove_papers"), 0);
    }
    // A row the table's own constraint refuses is still that row's: recorded, the others written.
    client
        .batch_execute(
            "CREATE OR REPLACE FUNCTION fault() RETURNS trigger LANGUAGE plpgsql AS
                 $$BEGIN RAISE EXCEPTION 'paper 7 may not be embedded' USING ERRCODE = 'check_violation'; END$$;",
        )
        .unwrap();
    let (written, failed): (i32, i32) = {
        let row = client
            .query_one("SELECT successful_embeddings, failed_embeddings FROM embed_pending(20)", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((written, failed), (19, 1));
    let blamed: String = client
        .query_one("SELECT paper_id FROM doctrove_embed.failures", &[])
        .unwrap()
        .get(0);
    assert_eq!(blamed, "7");
    // A table's CHECK constraint refuses paper 25: recorded without the row's contents (the
    // server's DETAIL quotes the whole failing row).
    client
        .batch_execute(
            "DROP TRIGGER fault ON doctrove_papers;
             ALTER TABLE doctrove_papers ADD CONSTRAINT no_embedding_for_25 CHECK (doctrove_paper_id <> 25 OR doctrove_embedding IS NULL);
             INSERT INTO doctrove_papers SELECT g, 'Paper ' || g, 'Secret abstract ' || g, NULL FROM generate_series(21, 30) g;",
        )
        .unwrap();
    let row = client
        .query_one("SELECT successful_embeddings, failed_embeddings FROM embed_pending(20)", &[])
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, i32>(1)), (9, 1));
    let recorded: String = client
        .query_one("SELECT last_error FROM doctrove_embed.failures WHERE paper_id = '25'", &[])
        .unwrap()
        .get(0);
    assert!(
        recorded.contains("23514") && recorded.contains("no_embedding_for_25"),
        "{recorded}"
    );
    assert!(
        !recorded.contains("Secret abstract"),
        "the row's contents were recorded: {recorded}"
    );
    record_figure("a lock timeout or a full disk while writing: the batch ends with its SQLSTATE, 0 papers blamed; a check violation: 1 blamed, 19 written");
}

#[test]
fn a_snapshot_transaction_is_refused_before_anything_is_paid() {
    let db = TestDb::new("robust_isolation");
    let mut client = db.connect();
    papers(&mut client, 8, 5);
    db.point_at_mock(&mut client, "dim=8/");
    for level in ["REPEATABLE READ", "SERIALIZABLE"] {
        for call in [
            "SELECT * FROM embed_pending(10)",
            "SELECT * FROM doctrove_embed.submit_batches()",
            "SELECT * FROM doctrove_embed.collect_batches()",
        ] {
            client.batch_execute(&format!("BEGIN ISOLATION LEVEL {level}")).unwrap();
            let outcome = client.query(call, &[]);
            client.batch_execute("ROLLBACK").unwrap();
            assert_eq!(sqlstate(&outcome).as_deref(), Some("25000"), "{level}: {call}: {outcome:?}");
        }
    }
    let stats = db.stats();
    assert_eq!(counters(&stats, ["requests", "batch_lists"]), [0, 0], "{stats}");
    // READ COMMITTED, the default, embeds them.
    let done: i32 = client
        .query_one("SELECT successful_embeddings FROM embed_pending(10)", &[])
        .unwrap()
        .get(0);
    assert_eq!(done, 5);
}

#[test]
fn an_input_the_api_fails_on_is_blamed_alone_and_its_neighbours_embedded() {
    let db = TestDb::new("robust_fails_alone");
    let mut client = db.connect();
    client
        .batch_execute(
            "CREATE TABLE doctrove_papers (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text,
                 doctrove_abstract text, doctrove_embedding vector(8));
             INSERT INTO doctrove_papers SELECT g, CASE WHEN g = 617 THEN 'CRASHES-THE-MODEL' ELSE 'Paper ' || g END,
                 NULL, NULL FROM generate_series(1, 999) g;
             SELECT doctrove_embed.create_pending_index();
             SET doctrove_embed.max_retries = 1;",
        )
        .unwrap();
    db.point_at_mock(&mut client, "dim=8/fail=CRASHES-THE-MODEL/");
    let calls = embed_until_done(&mut client, 250);
    let embedded = count(&mut client, "SELECT count(doctrove_embedding) FROM doctrove_papers");
    let blamed: Vec<(String, String)> = client
        .query("SELECT paper_id, last_error FROM doctrove_embed.failures", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let stats = db.stats();
    record_figure(&format!(
        "one input the API answers with 500 among 999: {embedded} embedded in {calls} calls, {} blamed, {} requests, paid twice {}",
        blamed.len(),
        stats["requests"],
        stats["paid_twice"]
    ));
    assert_eq!(embedded, 998);
    assert_eq!(blamed.len(), 1, "{blamed:?}");
    assert_eq!(blamed[0].0, "617");
    assert!(blamed[0].1.contains("500"), "{blamed:?}");
    // The one text paid twice is the canary's, sent before the search and before the blame.
    assert_eq!(stats["paid_twice"].as_u64(), Some(1));
    let one: Vec<f32> = client
        .query_one(
            "SELECT doctrove_embedding::real[] FROM doctrove_papers WHERE doctrove_paper_id = 618",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(one, doctrove_mock::vector_for("Title: Paper 618", 8));
}

#[test]
fn a_cancel_while_writing_ends_the_call_and_blames_no_paper() {
    let db = TestDb::new("robust_cancel_write");
    let mut client = db.connect();
    papers(&mut client, 8, 20);
    db.point_at_mock(&mut client, "dim=8/");
    // Writing paper 12 takes 3 s; the statement may take 1 s. The write's subtransactions catch
    // the cancel, which must end the call rather than isolate and blame paper 12.
    client
        .batch_execute(
            "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN PERFORM pg_sleep(3); RETURN NEW; END$$;
             CREATE TRIGGER slow BEFORE UPDATE ON doctrove_papers FOR EACH ROW
                 WHEN (NEW.doctrove_paper_id = 12 AND NEW.doctrove_embedding IS NOT NULL
                       AND NEW.doctrove_embedding OPERATOR(public.<>) '[1,1,1,1,1,1,1,1]') EXECUTE FUNCTION slow();
             SET statement_timeout = '1s';",
        )
        .unwrap();
    let outcome = client.query("SELECT * FROM embed_pending(20)", &[]);
    client.batch_execute("RESET statement_timeout").unwrap();
    assert_eq!(sqlstate(&outcome).as_deref(), Some("57014"), "{outcome:?}");
    assert_eq!(count(&mut client, "SELECT count(*) FROM doctrove_embed.failures"), 0);
    assert_eq!(count(&mut client, "SELECT count(doctrove_embedding) FROM doctrove_papers"), 0);
}
