//! The background workers in clusters of their own, started with the library preloaded.

use std::time::{Duration, Instant};

use doctrove_itest::cluster::{wait_for, Cluster};
use doctrove_itest::{counters, mock_root, mock_stats, record_figure};
use doctrove_mock::vector_for;
use postgres::Client;

/// A cluster whose workers call the mock under `scope` with `switches`, and start disabled so
/// the test can set the table up first.
fn worker_cluster(name: &str, workers: u32, scope: &str, switches: &str, extra: &[&str]) -> Cluster {
    let mut conf = vec![
        "shared_preload_libraries = 'doctrove_embed'".to_string(),
        "doctrove_embed.database = 'postgres'".to_string(),
        format!("doctrove_embed.workers = {workers}"),
        "doctrove_embed.enabled = off".to_string(),
        "doctrove_embed.naptime_ms = 600000".to_string(),
        format!("doctrove_embed.api_base_url = '{}/s={scope}/{switches}v1'", mock_root()),
        "doctrove_embed.api_key = 'sk-worker-test-key'".to_string(),
    ];
    conf.extend(extra.iter().map(|s| s.to_string()));
    Cluster::start(name, &conf)
}

fn create_table(client: &mut Client, dims: u32) {
    client
        .batch_execute(&format!(
            "CREATE EXTENSION doctrove_embed CASCADE;
             CREATE TABLE doctrove_papers (
                 doctrove_paper_id bigint PRIMARY KEY,
                 doctrove_source text DEFAULT 'arxiv',
                 doctrove_title text,
                 doctrove_abstract text,
                 doctrove_embedding vector({dims}));
             SELECT doctrove_embed.create_pending_index();
             SELECT doctrove_embed.watch();"
        ))
        .unwrap();
}

fn insert_papers(client: &mut Client, from: i64, to: i64) {
    client
        .execute(
            "INSERT INTO doctrove_papers (doctrove_paper_id, doctrove_title, doctrove_abstract)
             SELECT g, 'Paper ' || g, 'Abstract of paper ' || g FROM generate_series($1::bigint, $2::bigint) g",
            &[&from, &to],
        )
        .unwrap();
}

/// ALTER SYSTEM (which cannot share a transaction with anything) and a reload.
fn alter_system(client: &mut Client, setting: &str, value: &str) {
    client
        .batch_execute(&format!("ALTER SYSTEM SET {setting} = {value}"))
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
}

fn enable(client: &mut Client) {
    alter_system(client, "doctrove_embed.enabled", "on");
}

fn pending(client: &mut Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM doctrove_papers WHERE doctrove_embedding IS NULL", &[])
        .unwrap()
        .get(0)
}

/// Papers in open Batch API batches, as the status view counts them.
fn papers_in_batches(client: &mut Client) -> i64 {
    client
        .query_one("SELECT papers_in_batches FROM doctrove_embed.status", &[])
        .unwrap()
        .get(0)
}

fn wait_until_all_embedded(client: &mut Client, limit: Duration) {
    wait_for("every paper to be embedded", limit, || (pending(client) == 0).then_some(()));
}

/// Every paper holds the mock's vector for its text; returns how many were checked.
fn check_vectors(client: &mut Client, dims: usize) -> usize {
    let rows = client
        .query(
            "SELECT doctrove_embed.input_text(doctrove_title, doctrove_abstract), doctrove_embedding::real[]
             FROM doctrove_papers",
            &[],
        )
        .unwrap();
    for row in &rows {
        let text: String = row.get(0);
        let vector: Option<Vec<f32>> = row.get(1);
        assert_eq!(vector, Some(vector_for(&text, dims)), "wrong or missing vector for {text:?}");
    }
    rows.len()
}

fn embedding_of(client: &mut Client, id: i64) -> Option<Vec<f32>> {
    client
        .query_one(
            "SELECT doctrove_embedding::real[] FROM doctrove_papers WHERE doctrove_paper_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_watched_table_is_embedded_with_nobody_calling_anything() {
    let scope = format!("worker-basic-{}", std::process::id());
    let cluster = worker_cluster("basic", 1, &scope, "", &[]);
    let mut client = cluster.connect();
    create_table(&mut client, 1536);
    insert_papers(&mut client, 1, 10_000);
    enable(&mut client);
    wait_until_all_embedded(&mut client, Duration::from_secs(180));
    assert_eq!(check_vectors(&mut client, 1536), 10_000);
    let stats = mock_stats(&scope);
    assert_eq!(stats["inputs"], 10_000);
    assert_eq!(stats["duplicate_inputs"], 0);

    // The worker now sleeps for up to 10 minutes; a committed insert wakes it at once.
    let inserted = Instant::now();
    insert_papers(&mut client, 10_001, 10_001);
    wait_for("the new paper's embedding", Duration::from_secs(5), || {
        embedding_of(&mut client, 10_001)
    });
    let latency = inserted.elapsed();
    println!("new paper embedded {latency:?} after its commit (naptime 600 s)");
    assert!(latency < Duration::from_secs(2), "the new paper waited {latency:?}");

    // The operators' log lines.
    let log = cluster.log();
    assert!(
        log.contains("Found 10,000 papers needing embeddings"),
        "no Found line in:\n{log}"
    );
    assert!(log.contains("Batch completed in "), "no batch line");
    assert!(log.contains(" papers updated, "), "no batch line");
    assert!(log.contains("Processed 10,000/10,000 (100.00%)"), "no final progress line");

    // Status in SQL.
    let status = client
        .query_one(
            "SELECT pending, embedded, workers_running, tokens_used FROM doctrove_embed.status",
            &[],
        )
        .unwrap();
    assert_eq!(status.get::<_, i64>("pending"), 0);
    assert_eq!(status.get::<_, i64>("embedded"), 10_001);
    assert_eq!(status.get::<_, i32>("workers_running"), 1);
    assert!(status.get::<_, i64>("tokens_used") > 0);
    let worker = client
        .query_one(
            "SELECT pid, state, batches, papers_embedded, failures FROM doctrove_embed.workers",
            &[],
        )
        .unwrap();
    assert_eq!(worker.get::<_, String>("state"), "idle");
    assert_eq!(worker.get::<_, i64>("papers_embedded"), 10_001);
    assert_eq!(worker.get::<_, i64>("failures"), 0);
    assert_eq!(worker.get::<_, i64>("batches"), 41);
    let pid: i32 = worker.get("pid");
    let activity = client
        .query_one("SELECT backend_type, query FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .unwrap();
    assert_eq!(activity.get::<_, String>(0), "doctrove_embed worker");
    assert_eq!(activity.get::<_, String>(1), "idle");
}

#[test]
fn an_edited_title_is_embedded_again_and_other_updates_cost_nothing() {
    let scope = format!("worker-edit-{}", std::process::id());
    let cluster = worker_cluster("edit", 1, &scope, "dim=8/", &[]);
    let mut client = cluster.connect();
    create_table(&mut client, 8);
    insert_papers(&mut client, 1, 3);
    enable(&mut client);
    wait_until_all_embedded(&mut client, Duration::from_secs(30));
    let before = embedding_of(&mut client, 2).unwrap();
    let requests_before = mock_stats(&scope)["requests"].as_u64().unwrap();

    client
        .execute(
            "UPDATE doctrove_papers SET doctrove_source = 'other' WHERE doctrove_paper_id = 2",
            &[],
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        embedding_of(&mut client, 2),
        Some(before.clone()),
        "an unrelated update changed the embedding"
    );
    assert_eq!(
        mock_stats(&scope)["requests"].as_u64().unwrap(),
        requests_before,
        "an unrelated update called the API"
    );

    client
        .execute(
            "UPDATE doctrove_papers SET doctrove_title = 'Renamed' WHERE doctrove_paper_id = 2",
            &[],
        )
        .unwrap();
    let expected = vector_for("Title: Renamed Abstract: Abstract of paper 2", 8);
    wait_for("the edited paper's new embedding", Duration::from_secs(5), || {
        (embedding_of(&mut client, 2).as_ref() == Some(&expected)).then_some(())
    });
    assert_eq!(mock_stats(&scope)["requests"].as_u64().unwrap(), requests_before + 1);
}

#[test]
fn sigterm_mid_request_stops_the_worker_at_once_and_writes_nothing() {
    let scope = format!("worker-term-{}", std::process::id());
    let cluster = worker_cluster("term", 1, &scope, "latency=30000/dim=8/", &[]);
    let mut client = cluster.connect();
    create_table(&mut client, 8);
    insert_papers(&mut client, 1, 5);
    enable(&mut client);
    let pid: i32 = wait_for("the worker to call the API", Duration::from_secs(10), || {
        client
            .query_opt("SELECT pid FROM doctrove_embed.workers WHERE state = 'calling API'", &[])
            .unwrap()
            .map(|r| r.get(0))
    });
    let sent = Instant::now();
    client.execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    wait_for("the worker to exit", Duration::from_secs(5), || {
        let alive: i64 = client
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .unwrap()
            .get(0);
        (alive == 0).then_some(())
    });
    let stopped = sent.elapsed();
    println!("worker stopped {stopped:?} after SIGTERM, mid-request");
    assert!(stopped < Duration::from_secs(2), "the worker took {stopped:?} to stop");
    assert_eq!(pending(&mut client), 5, "a batch was written by a terminated worker");

    // The launcher starts another in its slot.
    let new_pid: i32 = wait_for("the worker to be restarted", Duration::from_secs(15), || {
        client
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'doctrove_embed worker'",
                &[],
            )
            .unwrap()
            .map(|r| r.get(0))
    });
    assert_ne!(new_pid, pid);
}

#[test]
fn a_reload_changes_the_next_batch_size() {
    let scope = format!("worker-reload-{}", std::process::id());
    let cluster = worker_cluster("reload", 1, &scope, "dim=8/", &["doctrove_embed.batch_size = 5"]);
    let mut client = cluster.connect();
    create_table(&mut client, 8);
    insert_papers(&mut client, 1, 20);
    enable(&mut client);
    wait_until_all_embedded(&mut client, Duration::from_secs(30));
    let stats = mock_stats(&scope);
    assert_eq!(stats["max_inputs_per_request"], 5);
    assert_eq!(stats["requests"], 4);

    alter_system(&mut client, "doctrove_embed.batch_size", "7");
    std::thread::sleep(Duration::from_millis(300));
    insert_papers(&mut client, 21, 34);
    wait_until_all_embedded(&mut client, Duration::from_secs(30));
    let stats = mock_stats(&scope);
    assert_eq!(stats["max_inputs_per_request"], 7);
    assert_eq!(stats["requests"], 6);
}

#[test]
fn four_workers_and_two_sessions_never_embed_a_paper_twice() {
    let scope = format!("worker-many-{}", std::process::id());
    let cluster = worker_cluster("many", 4, &scope, "latency=20/dim=384/", &[]);
    let mut client = cluster.connect();
    create_table(&mut client, 384);
    insert_papers(&mut client, 1, 20_000);
    enable(&mut client);
    let sessions: Vec<_> = (0..2)
        .map(|_| {
            let mut session = cluster.connect();
            std::thread::spawn(move || {
                let mut embedded = 0i64;
                loop {
                    let n: i32 = session
                        .query_one("SELECT successful_embeddings FROM embed_pending(100)", &[])
                        .unwrap()
                        .get(0);
                    if n == 0 {
                        return embedded;
                    }
                    embedded += i64::from(n);
                }
            })
        })
        .collect();
    let by_sessions: i64 = sessions.into_iter().map(|s| s.join().unwrap()).sum();
    wait_until_all_embedded(&mut client, Duration::from_secs(180));
    assert_eq!(check_vectors(&mut client, 384), 20_000);
    let stats = mock_stats(&scope);
    assert_eq!(stats["inputs"], 20_000);
    assert_eq!(stats["distinct_inputs"], 20_000);
    assert_eq!(stats["duplicate_inputs"], 0);
    let by_workers: i64 = client
        .query_one("SELECT sum(papers_embedded)::bigint FROM doctrove_embed.workers", &[])
        .unwrap()
        .get(0);
    println!("papers embedded by the 4 workers: {by_workers}, by the 2 sessions: {by_sessions}");
    assert_eq!(by_workers + by_sessions, 20_000);
    let running: i64 = client
        .query_one("SELECT count(*) FROM doctrove_embed.workers WHERE pid <> 0", &[])
        .unwrap()
        .get(0);
    assert_eq!(running, 4);
}

#[test]
fn a_refused_key_pauses_the_worker_with_a_clear_line_and_never_logs_the_key() {
    let scope = format!("worker-key-{}", std::process::id());
    let cluster = worker_cluster("key", 1, &scope, "key=another-key/dim=8/", &[]);
    let mut client = cluster.connect();
    create_table(&mut client, 8);
    insert_papers(&mut client, 1, 5);
    enable(&mut client);
    let (state, error): (String, String) = wait_for("the worker to pause", Duration::from_secs(10), || {
        client
            .query_opt(
                "SELECT state, last_error FROM doctrove_embed.workers WHERE last_error IS NOT NULL",
                &[],
            )
            .unwrap()
            .map(|r| (r.get(0), r.get(1)))
    });
    assert_eq!(state, "paused after an error");
    assert!(
        error.starts_with("the embeddings API refused the API key (HTTP 401)"),
        "{error}"
    );
    assert!(error.contains("[redacted]"), "{error}");
    assert_eq!(pending(&mut client), 5);
    // One request: a refused key is not retried.
    assert_eq!(mock_stats(&scope)["requests"], 1);
    let log = cluster.log();
    assert!(
        log.contains("batch failed, nothing written: the embeddings API refused the API key"),
        "{log}"
    );
    assert!(!log.contains("sk-worker-test-key"), "the key is in the server log");
}

#[test]
fn the_shared_rate_limit_keeps_the_workers_under_the_apis_tokens_per_minute() {
    let scope = format!("worker-tpm-{}", std::process::id());
    let cluster = worker_cluster(
        "tpm",
        4,
        &scope,
        "tpm=60000/dim=8/",
        &[
            "doctrove_embed.max_tokens_per_minute = 60000",
            "doctrove_embed.batch_size = 50",
        ],
    );
    let mut client = cluster.connect();
    create_table(&mut client, 8);
    client
        .execute(
            "INSERT INTO doctrove_papers (doctrove_paper_id, doctrove_title, doctrove_abstract)
             SELECT g, 'Paper ' || g, repeat('word ', 30) || g FROM generate_series(1, 700) g",
            &[],
        )
        .unwrap();
    let started = Instant::now();
    enable(&mut client);
    wait_until_all_embedded(&mut client, Duration::from_secs(120));
    let elapsed = started.elapsed();
    assert_eq!(check_vectors(&mut client, 8), 700);
    let stats = mock_stats(&scope);
    let [requests, limited, tokens] = counters(&stats, ["requests", "rate_limited", "tokens"]);
    let per_minute = tokens as f64 / elapsed.as_secs_f64() * 60.0;
    println!(
        "{tokens} tokens in {elapsed:?} = {per_minute:.0}/min against 60,000; {limited} of {requests} requests answered 429"
    );
    assert!(
        (limited as f64) < 0.01 * requests as f64,
        "{limited} of {requests} requests were answered 429"
    );
    assert!(per_minute <= 60_000.0 * 1.15, "{per_minute:.0} tokens/min exceeds the limit");
    assert!(
        per_minute >= 60_000.0 * 0.8,
        "{per_minute:.0} tokens/min: the limit is not used"
    );
}

/// A worker that polls open batches is never idle for long, so no commit finds it idle: it is
/// woken all the same, and a new paper is embedded live without waiting for the naptime.
#[test]
fn a_lone_worker_polling_open_batches_is_woken_for_a_new_paper() {
    let scope = format!("worker-lone-batches-{}", std::process::id());
    let extra = [
        "doctrove_embed.batch_api = on",
        "doctrove_embed.batch_api_min_papers = 100",
        "doctrove_embed.batch_api_poll_ms = 300",
    ];
    let cluster = worker_cluster("lone_batches", 1, &scope, "dim=8/batch_delay=30000/", &extra);
    let mut client = cluster.connect();
    create_table(&mut client, 8);
    insert_papers(&mut client, 1, 500);
    enable(&mut client);
    wait_for("the batch's submission", Duration::from_secs(30), || {
        (papers_in_batches(&mut client) == 500).then_some(())
    });
    // Past its first look for live work, the worker only polls the batch (every 300 ms) and
    // shows that as its state.
    wait_for("the worker to poll its batch", Duration::from_secs(10), || {
        let state: String = client
            .query_one("SELECT state FROM doctrove_embed.workers", &[])
            .unwrap()
            .get(0);
        (state == "submitting and collecting batches").then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let inserted = Instant::now();
    insert_papers(&mut client, 501, 501);
    let vector = wait_for("the new paper's embedding", Duration::from_secs(5), || {
        embedding_of(&mut client, 501)
    });
    let text: String = client
        .query_one(
            "SELECT doctrove_embed.input_text(doctrove_title, doctrove_abstract) FROM doctrove_papers \
             WHERE doctrove_paper_id = 501",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(vector, vector_for(&text, 8));
    assert_eq!(
        papers_in_batches(&mut client),
        500,
        "the batch closed first: the test proves nothing"
    );
    let stats = mock_stats(&scope);
    assert_eq!(stats["inputs"], 1, "{stats}");
    assert_eq!(stats["batches_created"], 1, "{stats}");
    println!("new paper embedded live {:?} after its commit", inserted.elapsed());
}

/// An endpoint without a Batch API fails the worker's look for its batches, the settings' job's
/// and a recorded job's alike; the live path goes on, a commit still wakes it, and each job's
/// failure is logged once a minute, not at every poll.
#[test]
fn a_failing_batch_api_does_not_keep_new_papers_from_the_live_path() {
    let scope = format!("worker-no-batch-api-{}", std::process::id());
    let extra = [
        "doctrove_embed.batch_api = on",
        "doctrove_embed.batch_api_min_papers = 100",
        "doctrove_embed.batch_api_poll_ms = 300",
    ];
    let cluster = worker_cluster("no_batch_api", 1, &scope, "dim=8/no_batch_api=1/", &extra);
    let mut client = cluster.connect();
    create_job_table(&mut client, "no_batch_api_owner", true);
    client
        .batch_execute(
            "SELECT doctrove_embed.create_job('local', 'doctrove_papers', 'local_embedding', 'local-model',
                 use_batch_api => true)",
        )
        .unwrap();
    // Enabled with nothing pending: the worker's first look for batches fails (HTTP 404), and
    // then it finds no live work.
    enable(&mut client);
    wait_for("the failed look for batches", Duration::from_secs(10), || {
        cluster.log().contains("has no Batch API").then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    for id in 1..=3 {
        insert_papers(&mut client, id, id);
        wait_for("the new paper's embedding", Duration::from_secs(5), || {
            embedding_of(&mut client, id)
        });
    }
    assert_eq!(check_vectors(&mut client, 8), 3);
    wait_for("the recorded job's column", Duration::from_secs(30), || {
        (pending_in(&mut client, "local_embedding") == 0).then_some(())
    });
    assert_eq!(check_column(&mut client, "local_embedding"), 3);
    let stats = mock_stats(&scope);
    assert_eq!(stats["inputs"], 6, "{stats}");
    assert_eq!(stats["batches_created"], 0, "{stats}");
    // Polled every 300 ms for seconds, each job's failure is one line of the log.
    let log = cluster.log();
    let failed_polls = |job: &str| {
        log.lines()
            .filter(|l| l.contains("WARNING") && l.contains(&format!("worker 0: {job}Batch API:")))
            .count()
    };
    assert_eq!((failed_polls(""), failed_polls("job local: ")), (1, 1), "{log}");
    // The job's error is in its figures; the worker's last error is the settings' job's, polled
    // before it (the recorded job's failed polls are not the worker's failures).
    let mut last_error = |view: &str| -> String {
        let error: Option<String> = client
            .query_one(&format!("SELECT last_error FROM doctrove_embed.{view}"), &[])
            .unwrap()
            .get(0);
        error.unwrap_or_else(|| panic!("no last_error in doctrove_embed.{view}"))
    };
    let job_error = last_error("jobs WHERE name = 'local'");
    assert!(job_error.contains("has no Batch API"), "{job_error}");
    let worker_error = last_error("workers");
    assert!(worker_error.starts_with("Batch API:"), "{worker_error}");
}

#[test]
fn with_batch_api_on_the_workers_backfill_through_batches_and_embed_new_papers_live_meanwhile() {
    let scope = format!("worker-batches-{}", std::process::id());
    let extra = [
        "doctrove_embed.batch_api = on",
        "doctrove_embed.batch_api_min_papers = 2000",
        "doctrove_embed.batch_api_poll_ms = 300",
        "doctrove_embed.batch_api_max_papers = 2000",
    ];
    let cluster = worker_cluster("batches", 2, &scope, "dim=8/batch_delay=8000/", &extra);
    let mut client = cluster.connect();
    create_table(&mut client, 8);
    insert_papers(&mut client, 1, 5000);
    enable(&mut client);
    // Worker 0 submits 2,000 papers a transaction while more than 2,000 are in no batch (the
    // rest, and the new paper below, are left to the live path); its log line says when its
    // submission is over.
    wait_for("worker 0's submission", Duration::from_secs(30), || {
        (cluster.log().contains("Batch API: collected") && papers_in_batches(&mut client) > 0).then_some(())
    });
    // While the batches are open, a new paper is embedded live within seconds.
    let inserted = Instant::now();
    insert_papers(&mut client, 5001, 5001);
    wait_for("the new paper's embedding", Duration::from_secs(5), || {
        embedding_of(&mut client, 5001)
    });
    let latency = inserted.elapsed();
    let still_in_batches = papers_in_batches(&mut client);
    assert!(
        still_in_batches > 0,
        "the batches closed before the new paper was embedded: the test proves nothing"
    );
    println!("new paper embedded live {latency:?} after its commit, with {still_in_batches} papers in open batches");

    wait_until_all_embedded(&mut client, Duration::from_secs(90));
    wait_for("the batches to be collected", Duration::from_secs(30), || {
        (papers_in_batches(&mut client) == 0).then_some(())
    });
    assert_eq!(check_vectors(&mut client, 8), 5001);
    let stats = mock_stats(&scope);
    let [batch, live] = counters(&stats, ["batch_inputs", "inputs"]);
    assert_eq!(batch + live, 5001, "{stats}");
    assert_eq!(stats["paid_twice"], 0, "{stats}");
    assert!(
        batch >= 2000,
        "at most the first 3,000 papers can have gone live before the first submission: {stats}"
    );
    let batch_tokens: i64 = client
        .query_one("SELECT batch_tokens_used FROM doctrove_embed.status", &[])
        .unwrap()
        .get(0);
    assert!(batch_tokens > 0);
    let collected: i64 = client
        .query_one(
            "SELECT count(*) FROM doctrove_embed.batches WHERE NOT open AND status = 'completed'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(collected >= 1);
    assert!(cluster.log().contains("Batch API: collected"), "no Batch API line in the log");
    doctrove_itest::record_figure(&format!(
        "workers with batch_api = on: 5,001 papers, {batch} through the Batch API and {live} live; a new paper embedded live {latency:.1?} after its commit while {still_in_batches} papers were in open batches"
    ));
}

#[test]
fn live_workers_do_not_wait_for_worker_0_s_submission() {
    let scope = format!("worker-no-wait-{}", std::process::id());
    let extra = [
        "doctrove_embed.batch_api = on",
        "doctrove_embed.batch_api_min_papers = 100",
        "doctrove_embed.batch_api_poll_ms = 60000",
        "doctrove_embed.batch_api_max_papers = 1000",
    ];
    // Worker 0's upload is held 8 s by the API; worker 1 embeds live meanwhile.
    let cluster = worker_cluster("no_wait", 2, &scope, "dim=8/upload_hold=8000/batch_delay=600000/", &extra);
    let mut client = cluster.connect();
    create_table(&mut client, 8);
    insert_papers(&mut client, 1, 3000);
    enable(&mut client);
    let live = wait_for("a paper embedded live", Duration::from_secs(20), || {
        let embedded: i64 = client
            .query_one("SELECT count(doctrove_embedding) FROM doctrove_papers", &[])
            .ok()?
            .get(0);
        (embedded > 0).then_some(embedded)
    });
    let created = mock_stats(&scope)["batches_created"].as_i64().unwrap_or(0);
    record_figure(&format!(
        "worker 1 embedded {live} papers live while worker 0's first upload was held (batches created meanwhile: {created})"
    ));
    assert_eq!(created, 0, "the live worker waited for worker 0's submission");
}

/// The papers table with two more embedding columns, owned by `owner`, whose writes of
/// `local_embedding` are logged with the role and search_path they ran with; `watched`: new
/// papers wake the workers.
fn create_job_table(client: &mut Client, owner: &str, watched: bool) {
    client
        .batch_execute(&format!(
            "CREATE EXTENSION doctrove_embed CASCADE;
             DROP ROLE IF EXISTS {owner}; CREATE ROLE {owner};
             CREATE TABLE doctrove_papers (
                 doctrove_paper_id bigint PRIMARY KEY,
                 doctrove_title text,
                 doctrove_abstract text,
                 doctrove_embedding vector(8),
                 local_embedding vector(8),
                 heavy_embedding vector(8),
                 made_by text);
             CREATE TABLE write_log (who text, path text);
             CREATE FUNCTION log_writer() RETURNS trigger LANGUAGE plpgsql AS
                 $$BEGIN INSERT INTO public.write_log VALUES (current_user, current_setting('search_path')); RETURN NEW; END$$;
             CREATE TRIGGER log_writer AFTER UPDATE OF local_embedding ON doctrove_papers
                 FOR EACH ROW EXECUTE FUNCTION log_writer();
             ALTER TABLE doctrove_papers OWNER TO {owner}; ALTER TABLE write_log OWNER TO {owner};
             GRANT EXECUTE ON FUNCTION doctrove_embed.create_job(text, text, text, text, text, text, text, integer, text, text, integer, integer, boolean, boolean, text[], text, text) TO {owner};
             ALTER FUNCTION log_writer() OWNER TO {owner};"
        ))
        .unwrap();
    if watched {
        client.batch_execute("SELECT doctrove_embed.watch()").unwrap();
    }
}

fn pending_in(client: &mut Client, column: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM doctrove_papers WHERE {column} IS NULL"), &[])
        .unwrap()
        .get(0)
}

/// Every paper's `column` holds the mock's vector for its text.
fn check_column(client: &mut Client, column: &str) -> usize {
    let rows = client
        .query(
            &format!(
                "SELECT doctrove_embed.input_text(doctrove_title, doctrove_abstract), {column}::real[] FROM doctrove_papers"
            ),
            &[],
        )
        .unwrap();
    for row in &rows {
        let text: String = row.get(0);
        assert_eq!(
            row.get::<_, Option<Vec<f32>>>(1),
            Some(vector_for(&text, 8)),
            "{column} of {text:?}"
        );
    }
    rows.len()
}

#[test]
fn a_job_created_paused_and_dropped_while_the_workers_run_takes_effect_without_a_restart() {
    let scope = format!("worker-jobs-{}", std::process::id());
    let cluster = worker_cluster("jobs", 2, &scope, "dim=8/", &[]);
    let mut client = cluster.connect();
    create_job_table(&mut client, "worker_job_owner", true);
    insert_papers(&mut client, 1, 300);
    enable(&mut client);
    // The job default (the settings) fills doctrove_embedding.
    wait_until_all_embedded(&mut client, Duration::from_secs(60));

    // A job created now is picked up within seconds, and runs as the table's owner.
    client
        .batch_execute(
            "SET ROLE worker_job_owner;
             SELECT doctrove_embed.create_job('local', 'doctrove_papers', 'local_embedding', 'local-model',
                                              model_version_column => 'made_by', batch_size => 50);
             RESET ROLE;",
        )
        .unwrap();
    let created = Instant::now();
    wait_for("the new job to fill its column", Duration::from_secs(30), || {
        (pending_in(&mut client, "local_embedding") == 0).then_some(())
    });
    println!("a new job's 300 papers embedded {:?} after its creation", created.elapsed());
    assert_eq!(check_column(&mut client, "local_embedding"), 300);
    let log: Vec<(String, String, i64)> = client
        .query("SELECT who, path, count(*) FROM write_log GROUP BY 1, 2", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        log,
        [("worker_job_owner".to_string(), "pg_catalog, pg_temp".to_string(), 300)]
    );
    let made_by: i64 = client
        .query_one("SELECT count(*) FROM doctrove_papers WHERE made_by = 'local-model'", &[])
        .unwrap()
        .get(0);
    assert_eq!(made_by, 300);
    let job = client
        .query_one(
            "SELECT embedded, failed, pending FROM doctrove_embed.jobs WHERE name = 'local'",
            &[],
        )
        .unwrap();
    assert_eq!((job.get::<_, i64>(0), job.get::<_, i64>(1)), (300, 0));
    assert_eq!(job.get::<_, Option<i64>>(2), Some(0));

    // Paused, it sends nothing while the job default embeds new papers; resumed, it catches up.
    client.batch_execute("SELECT doctrove_embed.pause_job('local')").unwrap();
    std::thread::sleep(Duration::from_secs(6)); // longer than the workers' look at the job list
    let inputs_before = mock_stats(&scope)["inputs"].as_i64().unwrap();
    insert_papers(&mut client, 301, 340);
    wait_until_all_embedded(&mut client, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pending_in(&mut client, "local_embedding"), 40, "a paused job ran");
    assert_eq!(mock_stats(&scope)["inputs"].as_i64().unwrap() - inputs_before, 40);
    client.batch_execute("SELECT doctrove_embed.resume_job('local')").unwrap();
    wait_for("the resumed job to catch up", Duration::from_secs(30), || {
        (pending_in(&mut client, "local_embedding") == 0).then_some(())
    });

    // Dropped, it is let go: new papers get only the job default's vectors.
    client.batch_execute("SELECT doctrove_embed.drop_job('local')").unwrap();
    std::thread::sleep(Duration::from_secs(6));
    insert_papers(&mut client, 341, 350);
    wait_until_all_embedded(&mut client, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pending_in(&mut client, "local_embedding"), 10, "a dropped job ran");
    // Each paper paid once per job that embedded it: 350 by the job default, 340 by the job
    // (the mock counts a text sent again, for the other model, as a duplicate).
    let stats = mock_stats(&scope);
    assert_eq!(counters(&stats, ["inputs", "duplicate_inputs"]), [690, 340], "{stats}");
}

#[test]
fn the_workers_share_batches_among_jobs_by_weight_and_starve_none() {
    let scope = format!("worker-weights-{}", std::process::id());
    // One worker, 40 ms a request; the settings name no table, so only the jobs run.
    let cluster = worker_cluster(
        "weights",
        1,
        &scope,
        "dim=8/latency=40/",
        &["doctrove_embed.table = 'no_such_table'"],
    );
    let mut client = cluster.connect();
    create_job_table(&mut client, "worker_weight_owner", false);
    insert_papers(&mut client, 1, 1000);
    client
        .batch_execute(
            "SELECT doctrove_embed.create_job('light', 'doctrove_papers', 'local_embedding', 'light-model', batch_size => 5, weight => 1);
             SELECT doctrove_embed.create_job('heavy', 'doctrove_papers', 'heavy_embedding', 'heavy-model', batch_size => 5, weight => 4);",
        )
        .unwrap();
    enable(&mut client);
    let done = |client: &mut Client| {
        let light = 1000 - pending_in(client, "local_embedding");
        let heavy = 1000 - pending_in(client, "heavy_embedding");
        (light, heavy)
    };
    let (light, heavy) = wait_for("100 batches", Duration::from_secs(60), || {
        let (light, heavy) = done(&mut client);
        (light + heavy >= 500).then_some((light, heavy))
    });
    record_figure(&format!(
        "one worker, two busy jobs of weights 1 and 4: after {} papers, light {light}, heavy {heavy}",
        light + heavy
    ));
    let ratio = heavy as f64 / light.max(1) as f64;
    assert!(light > 0, "the light job starved");
    assert!(
        (3.0..=5.0).contains(&ratio),
        "heavy/light = {ratio:.2} ({heavy}/{light}), weights 4:1"
    );
    wait_for("both jobs to finish", Duration::from_secs(120), || {
        (done(&mut client) == (1000, 1000)).then_some(())
    });
    assert_eq!(check_column(&mut client, "local_embedding"), 1000);
    assert_eq!(check_column(&mut client, "heavy_embedding"), 1000);
}

/// Workers serving each database, from the `workers` view: (database, workers).
fn workers_by_database(client: &mut Client) -> Vec<(String, i64)> {
    client
        .query(
            "SELECT database::text, count(*) FROM doctrove_embed.workers WHERE pid <> 0 AND database IS NOT NULL
             GROUP BY 1 ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn one_pool_of_workers_serves_every_database_with_the_extension() {
    let scope = format!("worker-databases-{}", std::process::id());
    // No doctrove_embed.database: every database where the extension is installed.
    let conf: Vec<String> = vec![
        "shared_preload_libraries = 'doctrove_embed'".to_string(),
        "doctrove_embed.workers = 2".to_string(),
        "doctrove_embed.naptime_ms = 2000".to_string(),
        format!("doctrove_embed.api_base_url = '{}/s={scope}/dim=8/v1'", mock_root()),
        "doctrove_embed.api_key = 'sk-worker-test-key'".to_string(),
    ];
    let cluster = Cluster::start("databases", &conf);
    let mut admin = cluster.connect();
    for name in ["alpha", "beta", "gamma"] {
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    }
    let mut alpha = cluster.connect_to("alpha");
    let mut beta = cluster.connect_to("beta");
    create_table(&mut alpha, 8);
    create_table(&mut beta, 8);
    // Texts differ across databases, so any text sent twice is a paper paid twice.
    insert_papers(&mut alpha, 1, 500);
    insert_papers(&mut beta, 1001, 1400);
    let started = Instant::now();
    wait_until_all_embedded(&mut alpha, Duration::from_secs(60));
    wait_until_all_embedded(&mut beta, Duration::from_secs(60));
    record_figure(&format!(
        "two databases created after the server started: 900 papers embedded by their own workers in {:?}",
        started.elapsed()
    ));
    assert_eq!(check_vectors(&mut alpha, 8), 500);
    assert_eq!(check_vectors(&mut beta, 8), 400);
    // One worker in each database with the extension; none stays in gamma (no extension) nor
    // in postgres.
    let by_database = wait_for("one worker per database", Duration::from_secs(20), || {
        let now = workers_by_database(&mut alpha);
        (now == vec![("alpha".to_string(), 1), ("beta".to_string(), 1)]).then_some(now)
    });
    assert_eq!(by_database.len(), 2);

    // A database created now, with more databases than workers: the idle ones give way.
    admin.batch_execute("CREATE DATABASE delta").unwrap();
    let mut delta = cluster.connect_to("delta");
    create_table(&mut delta, 8);
    insert_papers(&mut delta, 2001, 2300);
    wait_until_all_embedded(&mut delta, Duration::from_secs(30));
    assert_eq!(check_vectors(&mut delta, 8), 300);
    // alpha, maybe without a worker now, is served again as soon as papers come.
    insert_papers(&mut alpha, 501, 600);
    wait_until_all_embedded(&mut alpha, Duration::from_secs(30));
    let stats = mock_stats(&scope);
    assert_eq!(stats["inputs"], 1300, "{stats}");
    assert_eq!(stats["duplicate_inputs"], 0, "{stats}");

    // A database dropped while served: WITH (FORCE) ends its worker, and the others go on.
    admin.batch_execute("DROP DATABASE delta WITH (FORCE)").unwrap();
    wait_for("a worker in alpha and one in beta", Duration::from_secs(20), || {
        (workers_by_database(&mut alpha) == vec![("alpha".to_string(), 1), ("beta".to_string(), 1)]).then_some(())
    });
    // The extension dropped from beta: its worker leaves, and the database can be dropped.
    beta.batch_execute("SELECT doctrove_embed.unwatch(); DROP EXTENSION doctrove_embed")
        .unwrap();
    wait_for("beta's worker to leave", Duration::from_secs(15), || {
        (!workers_by_database(&mut alpha).iter().any(|(d, _)| d == "beta")).then_some(())
    });
    assert!(cluster
        .log()
        .contains("the extension was dropped from database \"beta\", leaving"));
    drop(beta);
    admin.batch_execute("DROP DATABASE beta").unwrap();

    // The list restricts them: only gamma is named, so alpha is served no more.
    gamma_gets_the_extension_and_alpha_is_left(&cluster, &mut admin, &mut alpha);
    let log = cluster.log();
    assert!(!log.contains("PANIC"), "the server log has a PANIC");
}

fn gamma_gets_the_extension_and_alpha_is_left(cluster: &Cluster, admin: &mut Client, alpha: &mut Client) {
    alter_system(admin, "doctrove_embed.database", "'gamma'");
    wait_for("alpha's workers to leave", Duration::from_secs(15), || {
        workers_by_database(alpha).is_empty().then_some(())
    });
    insert_papers(alpha, 601, 610);
    let mut gamma = cluster.connect_to("gamma");
    create_table(&mut gamma, 8);
    insert_papers(&mut gamma, 3001, 3050);
    wait_until_all_embedded(&mut gamma, Duration::from_secs(30));
    // alpha's new papers stay pending: it is not on the list.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(pending(alpha), 10);
    // The only database served keeps both workers.
    wait_for("both workers in gamma", Duration::from_secs(15), || {
        (workers_by_database(&mut gamma) == vec![("gamma".to_string(), 2)]).then_some(())
    });
}

#[test]
fn a_job_with_the_batch_api_is_backfilled_through_batches_by_the_workers() {
    let scope = format!("worker-job-batches-{}", std::process::id());
    // The settings' job stays live (batch_api off); the recorded job uses the Batch API.
    let extra = [
        "doctrove_embed.batch_api_min_papers = 1000",
        "doctrove_embed.batch_api_poll_ms = 300",
        "doctrove_embed.batch_api_max_papers = 1000",
    ];
    let cluster = worker_cluster("job_batches", 2, &scope, "dim=8/batch_delay=2000/", &extra);
    let mut client = cluster.connect();
    create_job_table(&mut client, "batch_job_owner", false);
    insert_papers(&mut client, 1, 3000);
    client
        .batch_execute(
            "SELECT doctrove_embed.create_job('local', 'doctrove_papers', 'local_embedding', 'local-model',
                 use_batch_api => true, text_format => 'passage: {title}[. {abstract}]')",
        )
        .unwrap();
    enable(&mut client);
    wait_for("both columns filled", Duration::from_secs(120), || {
        (pending_in(&mut client, "local_embedding") == 0 && pending_in(&mut client, "doctrove_embedding") == 0).then_some(())
    });
    wait_for("the job's batches to be collected", Duration::from_secs(60), || {
        let open: i64 = client
            .query_one("SELECT count(*) FROM doctrove_embed.batches WHERE open", &[])
            .unwrap()
            .get(0);
        (open == 0).then_some(())
    });
    let rows = client
        .query(
            "SELECT doctrove_embed.input_text(doctrove_title, doctrove_abstract, 'passage: {title}[. {abstract}]'),
                    local_embedding::real[] FROM doctrove_papers",
            &[],
        )
        .unwrap();
    for row in &rows {
        let text: String = row.get(0);
        assert_eq!(row.get::<_, Option<Vec<f32>>>(1), Some(vector_for(&text, 8)), "{text}");
    }
    assert_eq!(rows.len(), 3000);
    assert_eq!(check_vectors(&mut client, 8), 3000);
    let batches: Vec<(String, i32)> = client
        .query(
            "SELECT job, papers_written FROM doctrove_embed.batches ORDER BY submitted_at",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let stats = mock_stats(&scope);
    let [batch, live] = counters(&stats, ["batch_inputs", "inputs"]);
    record_figure(&format!(
        "a job with use_batch_api and the workers: 3,000 papers, {batch} through its batches {batches:?}, the rest live; the job default's 3,000 live"
    ));
    assert!(batches.iter().all(|(job, _)| job == "local"), "{batches:?}");
    assert!(batch >= 1000, "{stats}");
    assert_eq!(batches.iter().map(|(_, n)| i64::from(*n)).sum::<i64>(), batch);
    assert_eq!(batch + live, 6000, "{stats}");
    assert_eq!(stats["paid_twice"], 0, "{stats}");
    assert_eq!(stats["batch_last_model"], "local-model", "{stats}");
}

#[test]
fn a_database_owner_s_settings_never_choose_what_a_worker_runs() {
    let scope = format!("worker-owner-trap-{}", std::process::id());
    let conf: Vec<String> = vec![
        "shared_preload_libraries = 'doctrove_embed'".to_string(),
        "doctrove_embed.workers = 1".to_string(),
        format!("doctrove_embed.api_base_url = '{}/s={scope}/dim=8/v1'", mock_root()),
        "doctrove_embed.api_key = 'sk-worker-test-key'".to_string(),
    ];
    let cluster = Cluster::start("owner_trap", &conf);
    let mut admin = cluster.connect();
    admin.batch_execute("CREATE ROLE trap_owner LOGIN CREATEDB").unwrap();
    admin.batch_execute("CREATE DATABASE trap OWNER trap_owner").unwrap();
    // The owner of a database the workers look at puts an `=` of its own first on the
    // database's search_path: a worker resolving an unqualified `=` there would run it as the
    // bootstrap superuser.
    let mut owner = postgres::Client::connect(
        &format!("host=127.0.0.1 port={} user=trap_owner dbname=trap", cluster.port),
        postgres::NoTls,
    )
    .unwrap();
    owner
        .batch_execute(
            "CREATE TABLE public.ran_as (who text);
             CREATE SCHEMA trap;
             CREATE FUNCTION trap.name_eq(name, name) RETURNS boolean LANGUAGE sql AS
                 $$ INSERT INTO public.ran_as VALUES (current_user); SELECT $1::text OPERATOR(pg_catalog.=) $2::text $$;
             CREATE FUNCTION trap.text_eq(text, text) RETURNS boolean LANGUAGE sql AS
                 $$ INSERT INTO public.ran_as VALUES (current_user); SELECT $1 OPERATOR(pg_catalog.=) $2 $$;
             CREATE OPERATOR trap.= (LEFTARG = name, RIGHTARG = name, FUNCTION = trap.name_eq);
             CREATE OPERATOR trap.= (LEFTARG = text, RIGHTARG = text, FUNCTION = trap.text_eq);
             ALTER DATABASE trap SET search_path = trap, pg_catalog;
             ALTER DATABASE trap SET exit_on_error = on;",
        )
        .unwrap();
    // The launcher finds the new database and sends a worker to look for the extension.
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for("a worker to look at the new database", Duration::from_secs(30), || {
        cluster
            .log()
            .contains("database \"trap\" has no doctrove_embed extension")
            .then_some(())
    });
    let ran: i64 = owner.query_one("SELECT count(*) FROM public.ran_as", &[]).unwrap().get(0);
    let superuser: bool = admin
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = 'trap_owner'", &[])
        .unwrap()
        .get(0);
    doctrove_itest::record_attack(
        "run a database owner's operator in a worker through ALTER DATABASE ... SET search_path",
        ran > 0 || superuser,
    );
    assert_eq!(ran, 0, "the owner's operator ran in a worker");
    assert!(!superuser);
}
