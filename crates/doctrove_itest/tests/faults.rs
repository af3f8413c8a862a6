//! The fault suite: rate limits, server errors, timeouts, rejected texts, broken answers,
//! cancels, crashes and secrets, against the mock. Each test records its figures (papers
//! embedded, lost, written twice, extra API calls), printed at the end of `make test`.

use std::time::{Duration, Instant};

use doctrove_itest::cluster::{wait_for, Cluster};
use doctrove_itest::{create_logged_papers, embed_until_done, mock_root, record_figure, tally, TestDb};
use postgres::Client;

fn set(client: &mut Client, name: &str, value: &str) {
    client.execute("SELECT set_config($1, $2, false)", &[&name, &value]).unwrap();
}

fn requests(db: &TestDb) -> u64 {
    db.stats()["requests"].as_u64().unwrap()
}

#[test]
fn rate_limits_and_server_errors_are_retried_until_every_paper_is_embedded_once() {
    let db = TestDb::new("faults_429_500");
    let mut client = db.connect();
    create_logged_papers(&mut client, 20_000, 8);
    db.point_at_mock(&mut client, "p429=0.2/p500=0.1/dim=8/");
    set(&mut client, "doctrove_embed.max_retries", "20");
    embed_until_done(&mut client, 250);
    let t = tally(&mut client, 8);
    let stats = db.stats();
    record_figure(&format!(
        "429 (20%) and 500 (10%): {} of 20,000 papers embedded correctly, {} lost, {} wrong, {} written twice; \
         {} requests ({} answered 429/500)",
        t.correct, t.missing, t.wrong, t.written_twice, stats["requests"], stats["failed"]
    ));
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (20_000, 0, 0, 0));
    assert!(
        stats["failed"].as_u64().unwrap() > 0,
        "the mock should have failed some requests"
    );
}

#[test]
fn poison_texts_are_isolated_and_the_rest_embedded_within_the_call_budget() {
    let poisoned = [17i64, 480, 999, 1500, 1999];
    let prepare = |name: &str| {
        let db = TestDb::new(name);
        let mut client = db.connect();
        create_logged_papers(&mut client, 2000, 8);
        for id in poisoned {
            client
                .execute(
                    "UPDATE doctrove_papers SET doctrove_abstract = 'POISON text' WHERE doctrove_paper_id = $1",
                    &[&id],
                )
                .unwrap();
        }
        (db, client)
    };
    let (clean_db, mut clean) = prepare("faults_poison_clean");
    clean_db.point_at_mock(&mut clean, "dim=8/");
    embed_until_done(&mut clean, 250);
    let clean_requests = requests(&clean_db);

    let (db, mut client) = prepare("faults_poison");
    db.point_at_mock(&mut client, "poison=POISON/dim=8/");
    embed_until_done(&mut client, 250);
    let extra = requests(&db) - clean_requests;
    let budget = 3 + 8 * poisoned.len() as u64; // 3 + ceil(log2 250) x 5
    let t = tally(&mut client, 8);
    let failures: Vec<(String, i32)> = client
        .query(
            "SELECT paper_id, attempts FROM doctrove_embed.failures ORDER BY paper_id::bigint",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    record_figure(&format!(
        "5 poison texts among 2,000: {} embedded, {} in failures, {} lost, {} written twice; \
         {extra} API calls beyond the clean run's {clean_requests} (budget {budget})",
        t.correct,
        failures.len(),
        t.missing - failures.len(),
        t.written_twice
    ));
    assert_eq!(t.correct, 1995);
    assert_eq!(t.wrong, 0);
    assert_eq!(t.written_twice, 0);
    let expected: Vec<(String, i32)> = poisoned.iter().map(|id| (id.to_string(), 1)).collect();
    assert_eq!(failures, expected);
    assert!(extra <= budget, "{extra} extra calls, budget {budget}");

    // Held back: neither counted nor selected; the status view shows them.
    let pending: i64 = client
        .query_one("SELECT get_papers_needing_embeddings_count()", &[])
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
    let failed: i64 = client
        .query_one("SELECT failed FROM doctrove_embed.status", &[])
        .unwrap()
        .get(0);
    assert_eq!(failed, 5);
    // retry_failed() lets them be tried again.
    let cleared: i64 = client.query_one("SELECT doctrove_embed.retry_failed()", &[]).unwrap().get(0);
    assert_eq!(cleared, 5);
    let pending: i64 = client
        .query_one("SELECT get_papers_needing_embeddings_count()", &[])
        .unwrap()
        .get(0);
    assert_eq!(pending, 5);
}

#[test]
fn after_max_attempts_a_rejected_paper_is_no_longer_selected() {
    let db = TestDb::new("faults_attempts");
    let mut client = db.connect();
    create_logged_papers(&mut client, 3, 8);
    client
        .execute(
            "UPDATE doctrove_papers SET doctrove_abstract = 'POISON' WHERE doctrove_paper_id = 2",
            &[],
        )
        .unwrap();
    db.point_at_mock(&mut client, "poison=POISON/dim=8/");
    set(&mut client, "doctrove_embed.failed_retry_delay_ms", "0");
    // With no wait between attempts, each call tries the rejected paper again, up to 3 times.
    let mut rejections = 0;
    loop {
        let row = client
            .query_one("SELECT successful_embeddings, failed_embeddings FROM embed_pending(10)", &[])
            .unwrap();
        let (done, failed) = (row.get::<_, i32>(0), row.get::<_, i32>(1));
        rejections += failed;
        if done == 0 && failed == 0 {
            break;
        }
    }
    assert_eq!(rejections, 3);
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing), (2, 1));
    let attempts: i32 = client
        .query_one("SELECT attempts FROM doctrove_embed.failures", &[])
        .unwrap()
        .get(0);
    assert_eq!(attempts, 3);
    let error: String = client
        .query_one("SELECT last_error FROM doctrove_embed.failures", &[])
        .unwrap()
        .get(0);
    assert!(error.starts_with("HTTP 400: "), "{error}");
}

#[test]
fn timeouts_are_retried() {
    let db = TestDb::new("faults_timeouts");
    let mut client = db.connect();
    create_logged_papers(&mut client, 4000, 8);
    db.point_at_mock(&mut client, "pslow=0.3/slow=3000/dim=8/");
    set(&mut client, "doctrove_embed.request_timeout_ms", "400");
    set(&mut client, "doctrove_embed.max_retries", "20");
    embed_until_done(&mut client, 250);
    let t = tally(&mut client, 8);
    record_figure(&format!(
        "30% of requests timing out: {} of 4,000 embedded correctly, {} lost, {} written twice; {} requests",
        t.correct,
        t.missing,
        t.written_twice,
        requests(&db)
    ));
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (4000, 0, 0, 0));
}

#[test]
fn answers_with_a_wrong_count_or_dimension_are_refused_and_retried() {
    let db = TestDb::new("faults_malformed");
    let mut client = db.connect();
    create_logged_papers(&mut client, 4000, 8);
    db.point_at_mock(&mut client, "pdrop=0.2/pdimoff=0.2/dim=8/");
    set(&mut client, "doctrove_embed.max_retries", "20");
    // An answer that does not fit is sent once more at most: two in a row end the call with an
    // ERROR (nothing written), and the next call takes the papers again.
    let (mut calls, mut errors) = (0, 0);
    loop {
        calls += 1;
        match client.query_one("SELECT successful_embeddings, failed_embeddings FROM embed_pending(250)", &[]) {
            Ok(row) if row.get::<_, i32>(0) == 0 && row.get::<_, i32>(1) == 0 => break,
            Ok(_) => {}
            Err(error) => {
                let code = error.code().map(|c| c.code().to_string());
                assert!(matches!(code.as_deref(), Some("22023") | Some("39000")), "{error:?}");
                errors += 1;
            }
        }
        assert!(calls < 500, "the backlog never drained");
    }
    let t = tally(&mut client, 8);
    record_figure(&format!(
        "20% answers short a vector, 20% with the wrong dimension: {} of 4,000 embedded correctly, {} wrong, {} lost, \
         {} written twice; {} requests, {errors} of {calls} calls ended in an error after one retry",
        t.correct,
        t.wrong,
        t.missing,
        t.written_twice,
        requests(&db)
    ));
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (4000, 0, 0, 0));
}

#[test]
fn an_answer_of_random_bytes_writes_nothing() {
    let db = TestDb::new("faults_random");
    let mut client = db.connect();
    create_logged_papers(&mut client, 50, 8);
    db.point_at_mock(&mut client, "body=random/dim=8/");
    set(&mut client, "doctrove_embed.max_retries", "2");
    let error = client.query_one("SELECT * FROM embed_pending(250)", &[]).unwrap_err();
    assert_eq!(error.as_db_error().unwrap().code().code(), "39000");
    // The first request and its 2 retries, then a canary and its 2 retries: the canary fails
    // the same way, so the API fails every text and no input is searched for or blamed.
    assert_eq!(requests(&db), 6);
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing), (0, 50));
}

#[test]
fn final_errors_are_not_retried() {
    let db = TestDb::new("faults_final");
    let mut client = db.connect();
    create_logged_papers(&mut client, 10, 8);
    for (switches, sqlstate) in [("status=401/", "28000"), ("status=403/", "28000"), ("quota=0/", "53400")] {
        db.point_at_mock(&mut client, &format!("{switches}dim=8/"));
        let before = requests(&db);
        let error = client.query_one("SELECT * FROM embed_pending(250)", &[]).unwrap_err();
        assert_eq!(error.as_db_error().unwrap().code().code(), sqlstate, "{switches}");
        assert_eq!(requests(&db) - before, 1, "{switches} was retried");
    }
    let t = tally(&mut client, 8);
    assert_eq!(t.missing, 10);
}

#[test]
fn a_cancel_ends_a_slow_call_within_a_second_and_writes_nothing() {
    let db = TestDb::new("faults_cancel");
    let mut client = db.connect();
    create_logged_papers(&mut client, 20, 8);
    db.point_at_mock(&mut client, "latency=60000/dim=8/");
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let mut other = db.connect();
    let canceller = std::thread::spawn(move || {
        wait_for("the call to be waiting on the API", Duration::from_secs(10), || {
            let waiting: i64 = other
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE '%embed_pending%' AND state = 'active'",
                    &[&pid],
                )
                .unwrap()
                .get(0);
            (waiting == 1).then_some(())
        });
        std::thread::sleep(Duration::from_millis(300));
        let sent = Instant::now();
        other.execute("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
        sent
    });
    let error = client.query_one("SELECT * FROM embed_pending(250)", &[]).unwrap_err();
    let cancelled_after = canceller.join().unwrap().elapsed();
    assert_eq!(error.as_db_error().unwrap().code().code(), "57014");
    record_figure(&format!(
        "pg_cancel_backend during a 60 s API call: ended after {cancelled_after:?}, nothing written"
    ));
    assert!(cancelled_after < Duration::from_secs(1), "{cancelled_after:?}");

    set(&mut client, "statement_timeout", "500");
    let started = Instant::now();
    let error = client.query_one("SELECT * FROM embed_pending(250)", &[]).unwrap_err();
    let took = started.elapsed();
    set(&mut client, "statement_timeout", "0");
    assert_eq!(error.as_db_error().unwrap().code().code(), "57014");
    record_figure(&format!(
        "statement_timeout 500 ms during a 60 s API call: ended after {took:?}, nothing written"
    ));
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let t = tally(&mut client, 8);
    assert_eq!(t.missing, 20);
}

#[test]
fn a_batch_over_the_token_budget_is_split_into_several_requests() {
    let db = TestDb::new("faults_tokens");
    let mut client = db.connect();
    create_logged_papers(&mut client, 40, 8);
    db.point_at_mock(&mut client, "dim=8/");
    // Each text is about 10 tokens: 40 texts need at least 4 requests of 100.
    set(&mut client, "doctrove_embed.max_tokens_per_request", "100");
    embed_until_done(&mut client, 250);
    let stats = db.stats();
    let requests = stats["requests"].as_u64().unwrap();
    assert!((4..=10).contains(&requests), "{requests} requests");
    assert_eq!(stats["duplicate_inputs"], 0);
    assert_eq!(tally(&mut client, 8).correct, 40);
}

#[test]
fn a_text_over_the_model_limit_is_cut_not_rejected() {
    let db = TestDb::new("faults_long_text");
    let mut client = db.connect();
    create_logged_papers(&mut client, 1, 8);
    client
        .execute(
            "UPDATE doctrove_papers SET doctrove_abstract = repeat('word ', 20000) WHERE doctrove_paper_id = 1",
            &[],
        )
        .unwrap();
    db.point_at_mock(&mut client, "dim=8/");
    embed_until_done(&mut client, 250);
    let full: String = client
        .query_one(
            "SELECT doctrove_embed.input_text(doctrove_title, doctrove_abstract) FROM doctrove_papers",
            &[],
        )
        .unwrap()
        .get(0);
    let (cut, tokens) = embed_core::tokens::truncate(&full, embed_core::tokens::MAX_TOKENS_PER_INPUT);
    assert_eq!(tokens, Some(8191));
    let stored: Vec<f32> = client
        .query_one("SELECT doctrove_embedding::real[] FROM doctrove_papers", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, doctrove_mock::vector_for(&cut, 8));
}

#[test]
fn the_key_is_hidden_from_other_roles_every_way() {
    let db = TestDb::new("faults_secret");
    let mut admin = db.connect();
    admin
        .batch_execute("DROP ROLE IF EXISTS secret_reader; CREATE ROLE secret_reader LOGIN")
        .unwrap();
    let key = "sk-regress-0123456789";
    // Per-role and per-database settings would land in pg_db_role_setting: refused.
    for statement in [
        format!("ALTER ROLE secret_reader SET doctrove_embed.api_key = '{key}'"),
        format!("ALTER DATABASE {} SET doctrove_embed.api_key = '{key}'", db.name),
    ] {
        let error = admin.batch_execute(&statement).unwrap_err();
        assert_eq!(error.as_db_error().unwrap().code().code(), "42501", "{statement}");
    }
    let mut reader = postgres::Client::connect(
        &format!(
            "{} dbname={} user=secret_reader",
            doctrove_itest::cluster().replace("user=postgres", ""),
            db.name
        ),
        postgres::NoTls,
    )
    .unwrap();
    for query in [
        "SHOW doctrove_embed.api_key",
        "SELECT current_setting('doctrove_embed.api_key')",
    ] {
        let error = reader.simple_query(query).unwrap_err();
        assert_eq!(error.as_db_error().unwrap().code().code(), "42501", "{query}");
    }
    let visible: i64 = reader
        .query_one("SELECT count(*) FROM pg_settings WHERE name = 'doctrove_embed.api_key'", &[])
        .unwrap()
        .get(0);
    assert_eq!(visible, 0);
    let stored: i64 = reader
        .query_one(
            "SELECT count(*) FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%' || $1 || '%'",
            &[&key],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    let error = reader.simple_query("SET doctrove_embed.api_key = 'x'").unwrap_err();
    assert_eq!(error.as_db_error().unwrap().code().code(), "42501");
    drop(reader);
    admin.batch_execute("DROP ROLE secret_reader").unwrap();
    record_figure(
        "API key: refused per role and per database; hidden from SHOW, current_setting, pg_settings, pg_db_role_setting",
    );
}

#[test]
fn kill_9_of_a_worker_mid_batch_loses_nothing_and_writes_nothing_twice() {
    let scope = format!("faults-kill9-{}", std::process::id());
    let cluster = Cluster::start(
        "kill9",
        &[
            "shared_preload_libraries = 'doctrove_embed'".to_string(),
            "doctrove_embed.database = 'postgres'".to_string(),
            "doctrove_embed.workers = 2".to_string(),
            "doctrove_embed.enabled = off".to_string(),
            "doctrove_embed.batch_size = 100".to_string(),
            "restart_after_crash = on".to_string(),
            format!(
                "doctrove_embed.api_base_url = '{}/s={scope}/latency=300/dim=8/v1'",
                mock_root()
            ),
        ],
    );
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION doctrove_embed CASCADE").unwrap();
    create_logged_papers(&mut client, 3000, 8);
    client.batch_execute("ALTER SYSTEM SET doctrove_embed.enabled = on").unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    let pid: i32 = wait_for("a worker in the middle of a batch", Duration::from_secs(20), || {
        client
            .query_opt(
                "SELECT pid FROM doctrove_embed.workers WHERE state = 'calling API' AND batches > 2 LIMIT 1",
                &[],
            )
            .unwrap()
            .map(|r| r.get(0))
    });
    let done_before: i64 = client.query_one("SELECT count(*) FROM embedding_writes", &[]).unwrap().get(0);
    // SAFETY of the test: SIGKILL to one server process; the postmaster restarts the server.
    assert!(std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    drop(client);
    let mut client = cluster.reconnect_after_crash();
    wait_for("every paper embedded after the crash", Duration::from_secs(120), || {
        let pending: i64 = client
            .query_one("SELECT count(*) FROM doctrove_papers WHERE doctrove_embedding IS NULL", &[])
            .ok()?
            .get(0);
        (pending == 0).then_some(())
    });
    let t = tally(&mut client, 8);
    record_figure(&format!(
        "kill -9 of a worker mid-batch (after {done_before} papers): {} of 3,000 embedded correctly, {} lost, {} wrong, \
         {} written twice",
        t.correct, t.missing, t.wrong, t.written_twice
    ));
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (3000, 0, 0, 0));
    assert!(cluster.log().contains("terminated by signal 9"), "no crash in the log");
}

#[test]
fn kill_9_of_a_session_mid_batch_loses_nothing() {
    let cluster = Cluster::start(
        "kill9s",
        &[
            "shared_preload_libraries = 'doctrove_embed'".to_string(),
            "doctrove_embed.workers = 0".to_string(),
            format!(
                "doctrove_embed.api_base_url = '{}/s=kill9s-{}/latency=2000/dim=8/v1'",
                mock_root(),
                std::process::id()
            ),
        ],
    );
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION doctrove_embed CASCADE").unwrap();
    create_logged_papers(&mut client, 500, 8);
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let session = std::thread::spawn(move || client.query_one("SELECT * FROM embed_pending(250)", &[]).map(|_| ()));
    std::thread::sleep(Duration::from_millis(800));
    assert!(std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    assert!(session.join().unwrap().is_err(), "the killed session's call cannot succeed");
    let mut client = cluster.reconnect_after_crash();
    let t = tally(&mut client, 8);
    assert_eq!(
        (t.correct, t.missing, t.written_twice),
        (0, 500, 0),
        "a partial batch was written"
    );
    let pending: i64 = client
        .query_one("SELECT get_papers_needing_embeddings_count()", &[])
        .unwrap()
        .get(0);
    assert_eq!(pending, 500);
    record_figure("kill -9 of a session mid-batch: 0 papers written, 500 pending again, none lost");
}

/// A session on `cluster` opened after a configuration reload has been processed.
fn session_after_reload(cluster: &Cluster, client: &mut Client) -> Client {
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    cluster.connect()
}

fn embedded_by(client: &mut Client, batch: i32) -> Result<i32, String> {
    client
        .query_one("SELECT successful_embeddings FROM embed_pending($1)", &[&batch])
        .map(|row| row.get(0))
        .map_err(|e| {
            e.as_db_error()
                .map(|d| format!("{}: {}", d.code().code(), d.message()))
                .unwrap_or(e.to_string())
        })
}

#[test]
fn a_key_changed_by_reload_is_used_at_once_and_never_written_to_the_log() {
    let (first, second, third) = (
        "sk-first-key-0123456789",
        "sk-second-key-9876543210",
        "sk-third-key-5555555555",
    );
    let cluster = Cluster::start(
        "keylog",
        &[
            "shared_preload_libraries = 'doctrove_embed'".to_string(),
            "doctrove_embed.workers = 0".to_string(),
            // The mock answers 401 unless it is given the second key.
            format!(
                "doctrove_embed.api_base_url = '{}/s=keylog-{}/key={second}/dim=8/v1'",
                mock_root(),
                std::process::id()
            ),
        ],
    );
    let mut admin = cluster.connect();
    admin.batch_execute("CREATE EXTENSION doctrove_embed CASCADE").unwrap();
    create_logged_papers(&mut admin, 30, 8);

    admin
        .batch_execute(&format!("ALTER SYSTEM SET doctrove_embed.api_key = '{first}'"))
        .unwrap();
    let mut session = session_after_reload(&cluster, &mut admin);
    let error = embedded_by(&mut session, 10).unwrap_err();
    assert!(error.starts_with("28000"), "{error}");

    admin
        .batch_execute(&format!("ALTER SYSTEM SET doctrove_embed.api_key = '{second}'"))
        .unwrap();
    let mut session = session_after_reload(&cluster, &mut admin);
    let shown: String = session.query_one("SHOW doctrove_embed.api_key", &[]).unwrap().get(0);
    assert_eq!(shown, "(hidden)", "a superuser's SHOW");
    assert_eq!(embedded_by(&mut session, 10), Ok(10));

    // A session SET that is rolled back leaves the key in force as it was.
    session
        .batch_execute(&format!("BEGIN; SET LOCAL doctrove_embed.api_key = '{third}'"))
        .unwrap();
    let error = embedded_by(&mut session, 10).unwrap_err();
    assert!(error.starts_with("28000"), "{error}");
    session.batch_execute("ROLLBACK").unwrap();
    assert_eq!(embedded_by(&mut session, 10), Ok(10));
    session
        .batch_execute(&format!(
            "SET doctrove_embed.api_key = '{third}'; RESET doctrove_embed.api_key"
        ))
        .unwrap();
    assert_eq!(embedded_by(&mut session, 10), Ok(10));

    let t = tally(&mut session, 8);
    assert_eq!((t.correct, t.missing, t.written_twice), (30, 0, 0));
    let log = cluster.log();
    assert!(log.contains("received SIGHUP"), "no reload in the log");
    for key in [first, second, third] {
        assert!(!log.contains(key), "the server log shows a key");
    }
    record_figure(
        "API key: changed twice by ALTER SYSTEM and reload, used at once, never in the server log, SHOW gives (hidden)",
    );
}
