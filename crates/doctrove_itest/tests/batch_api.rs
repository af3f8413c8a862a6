//! The Batch API path against the mock's Batch API, on the installed extension: a backfill
//! through batches while the live path runs, rejected texts, an expired batch, the enqueued-token
//! limit, and `kill -9` during a submission and during a collection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use doctrove_itest::cluster::Cluster;
use doctrove_itest::{
    connect_as, counters, create_logged_papers, embed_until_done, mock_root, mock_stats, record_attack, record_figure, tally,
    with_peak_private_memory, TestDb,
};
use postgres::Client;

/// Collects until no batch is open; returns (batches collected, written, failed, released).
fn collect_until_closed(client: &mut Client, limit: Duration) -> (i32, i64, i64, i64) {
    let start = Instant::now();
    let mut totals = (0, 0, 0, 0);
    loop {
        let row = client
            .query_one("SELECT * FROM doctrove_embed.collect_batches()", &[])
            .unwrap();
        totals.0 += row.get::<_, i32>("batches_collected");
        totals.1 += row.get::<_, i64>("papers_written");
        totals.2 += row.get::<_, i64>("papers_failed");
        totals.3 += row.get::<_, i64>("papers_released");
        if row.get::<_, i32>("batches_open") == 0 {
            return totals;
        }
        assert!(start.elapsed() < limit, "batches still open after {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn submit(client: &mut Client) -> (i32, i64, i32) {
    let row = client
        .query_one("SELECT * FROM doctrove_embed.submit_batches()", &[])
        .unwrap();
    (row.get("batches"), row.get("papers"), row.get("adopted"))
}

fn count(client: &mut Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn a_backfill_of_20000_papers_goes_through_batches_while_the_live_path_runs() {
    let db = TestDb::new("batch_backfill");
    let mut client = db.connect();
    db.point_at_mock(&mut client, "dim=8/batch_delay=1500/");
    create_logged_papers(&mut client, 20_000, 8);
    client
        .batch_execute("SET doctrove_embed.batch_api_max_papers = 5000")
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let live = {
        let (stop, mut live_client) = (Arc::clone(&stop), db.connect());
        db.point_at_mock(&mut live_client, "dim=8/");
        std::thread::spawn(move || {
            let mut embedded = 0;
            while !stop.load(Ordering::SeqCst) {
                let row = live_client
                    .query_one("SELECT successful_embeddings FROM embed_pending(100)", &[])
                    .unwrap();
                embedded += row.get::<_, i32>(0);
                std::thread::sleep(Duration::from_millis(20));
            }
            embedded
        })
    };
    let (batches, papers, _) = submit(&mut client);
    // New papers while the batches are open go through the live path.
    client
        .batch_execute("INSERT INTO doctrove_papers SELECT g, 'New paper ' || g, 'Fresh abstract ' || g, NULL FROM generate_series(20001, 20300) g")
        .unwrap();
    let in_batches = count(&mut client, "SELECT papers_in_batches FROM doctrove_embed.status");
    assert_eq!(in_batches, papers, "the status view counts the papers in open batches");
    let (collected, written, failed, released) = collect_until_closed(&mut client, Duration::from_secs(120));
    stop.store(true, Ordering::SeqCst);
    let live_embedded = live.join().unwrap();
    embed_until_done(&mut client, 250);

    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (20_300, 0, 0, 0), "{t:?}");
    assert_eq!((collected, written, failed, released), (batches, papers, 0, 0));
    let stats = db.stats();
    assert_eq!(stats["paid_twice"], 0, "a text was paid for twice: {stats}");
    assert_eq!(stats["batch_inputs"].as_i64(), Some(papers));
    assert_eq!(
        stats["batch_inputs"].as_i64().unwrap() + stats["inputs"].as_i64().unwrap(),
        20_300
    );
    assert!(batches >= 4, "batches of at most 5,000 papers: {batches}");
    record_figure(&format!(
        "Batch API backfill: 20,300 papers, {papers} through {batches} batches and {} live ({live_embedded} while batches were open); none paid twice",
        20_300 - papers
    ));
}

#[test]
fn rejected_texts_in_a_batch_are_recorded_and_the_rest_is_written() {
    let db = TestDb::new("batch_poison");
    let mut client = db.connect();
    db.point_at_mock(&mut client, "dim=8/poison=POISON/");
    create_logged_papers(&mut client, 1000, 8);
    client
        .batch_execute(
            "UPDATE doctrove_papers SET doctrove_title = 'POISON ' || doctrove_paper_id WHERE doctrove_paper_id % 100 = 0",
        )
        .unwrap();
    assert_eq!(submit(&mut client).1, 1000);
    let (_, written, failed, released) = collect_until_closed(&mut client, Duration::from_secs(30));
    assert_eq!((written, failed, released), (990, 10, 0));
    let recorded = count(
        &mut client,
        "SELECT count(*) FROM doctrove_embed.failures WHERE last_error LIKE '%rejected%' AND paper_id::bigint % 100 = 0",
    );
    assert_eq!(recorded, 10);
    // The rejected papers are held back, not sent again live.
    assert_eq!(embed_until_done(&mut client, 250), 1);
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (990, 10, 0, 0));
    let stats = db.stats();
    assert_eq!(counters(&stats, ["batch_inputs", "inputs"]), [990, 0], "{stats}");
    record_figure("Batch API with 10 rejected texts in 1,000: 990 written from the batch (99%), 10 recorded in failures");
}

#[test]
fn an_expired_batch_writes_what_was_done_and_the_rest_is_embedded_live() {
    let db = TestDb::new("batch_expired");
    let mut client = db.connect();
    db.point_at_mock(&mut client, "dim=8/batch_expire=1/");
    create_logged_papers(&mut client, 1000, 8);
    assert_eq!(submit(&mut client), (1, 1000, 0));
    // PUBLIC may read batch_papers, but a role sees only the claims of tables it may read.
    client
        .batch_execute("DO $$BEGIN CREATE ROLE batch_outsider LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END$$")
        .unwrap();
    let mut outsider = connect_as("batch_outsider", &db.name);
    let seen = count(&mut outsider, "SELECT count(*) FROM doctrove_embed.batch_papers");
    record_attack(
        "read the paper ids of a table without SELECT on it through doctrove_embed.batch_papers",
        seen > 0,
    );
    assert_eq!(seen, 0);
    // A role that may read a column of the table (as a least-privilege embedding role does)
    // sees its claims, so its embed_pending() skips them.
    client
        .batch_execute("GRANT SELECT (doctrove_title) ON doctrove_papers TO batch_outsider")
        .unwrap();
    assert_eq!(count(&mut outsider, "SELECT count(*) FROM doctrove_embed.batch_papers"), 1000);
    drop(outsider);
    let (_, written, failed, released) = collect_until_closed(&mut client, Duration::from_secs(30));
    assert_eq!((written, failed, released), (500, 0, 500));
    let status: String = client
        .query_one("SELECT status FROM doctrove_embed.batches", &[])
        .unwrap()
        .get(0);
    assert_eq!(status, "expired");
    assert_eq!(count(&mut client, "SELECT get_papers_needing_embeddings_count()"), 500);
    embed_until_done(&mut client, 250);
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (1000, 0, 0, 0));
    let stats = db.stats();
    assert_eq!(
        counters(&stats, ["batch_inputs", "inputs", "paid_twice"]),
        [500, 500, 0],
        "{stats}"
    );
}

#[test]
fn a_batch_over_the_enqueued_token_limit_is_released_and_sent_again_later() {
    let db = TestDb::new("batch_token_limit");
    let mut client = db.connect();
    // The mock counts a token per 4 bytes: 500 papers hold about 5,000; the limit lets one
    // batch of them in at a time.
    db.point_at_mock(&mut client, "dim=8/batch_delay=5000/batch_tokens=9000/");
    create_logged_papers(&mut client, 1000, 8);
    client.batch_execute("SET doctrove_embed.batch_api_max_papers = 500").unwrap();
    assert_eq!(submit(&mut client).0, 2);
    // The refused batch is collected (its papers released) while the other is under way: with the
    // limit unknown, a submission now waits instead of uploading them to be refused again.
    let row = client
        .query_one("SELECT * FROM doctrove_embed.collect_batches()", &[])
        .unwrap();
    assert_eq!(
        (row.get::<_, i32>("batches_collected"), row.get::<_, i64>("papers_released")),
        (1, 500)
    );
    assert_eq!(submit(&mut client).0, 0);
    assert_eq!(db.stats()["batch_files_uploaded"].as_u64(), Some(2));
    let (_, written, _, released) = collect_until_closed(&mut client, Duration::from_secs(30));
    assert_eq!((written, released), (500, 0));
    let error: String = client
        .query_one("SELECT error FROM doctrove_embed.batches WHERE status = 'failed'", &[])
        .unwrap()
        .get(0);
    assert!(error.starts_with("token_limit_exceeded"), "{error}");
    assert_eq!(count(&mut client, "SELECT count(*) FROM doctrove_embed.batch_papers"), 0);
    // Sent again once the first batch is done.
    assert_eq!(submit(&mut client).1, 500);
    collect_until_closed(&mut client, Duration::from_secs(30));
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing, t.written_twice), (1000, 0, 0));
    // A known limit keeps a submission within it: one token of room takes no paper.
    client
        .batch_execute("INSERT INTO doctrove_papers VALUES (5001, 'Late', 'Late abstract', NULL)")
        .unwrap();
    client
        .batch_execute("SET doctrove_embed.batch_api_max_enqueued_tokens = 1")
        .unwrap();
    assert_eq!(submit(&mut client).0, 0);
    assert_eq!(db.stats()["paid_twice"], 0);
}

/// A cluster of its own (a `kill -9` restarts the whole server) with 500 papers.
fn crash_cluster(name: &str, switches: &str) -> (Cluster, Client) {
    let cluster = Cluster::start(
        name,
        &[
            "shared_preload_libraries = 'doctrove_embed'".to_string(),
            "doctrove_embed.workers = 0".to_string(),
            format!(
                "doctrove_embed.api_base_url = '{}/s={name}-{}/dim=8/{switches}v1'",
                mock_root(),
                std::process::id()
            ),
        ],
    );
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION doctrove_embed CASCADE").unwrap();
    create_logged_papers(&mut client, 500, 8);
    (cluster, client)
}

fn kill_9_during(client: Client, sql: &'static str, after: Duration) {
    let mut client = client;
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let session = std::thread::spawn(move || client.batch_execute(sql));
    std::thread::sleep(after);
    assert!(std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success());
    assert!(session.join().unwrap().is_err(), "the killed session's call cannot succeed");
}

#[test]
fn kill_9_during_a_submission_loses_nothing_and_pays_nothing_twice() {
    let (cluster, client) = crash_cluster("batchkill_submit", "batch_hold=2000/batch_delay=6000/");
    let scope = format!("batchkill_submit-{}", std::process::id());
    // The batch exists on the API when the session dies, and was never recorded.
    kill_9_during(
        client,
        "SELECT * FROM doctrove_embed.submit_batches()",
        Duration::from_millis(1000),
    );
    let mut client = cluster.reconnect_after_crash();
    assert_eq!(mock_stats(&scope)["batches_created"], 1);
    assert_eq!(count(&mut client, "SELECT count(*) FROM doctrove_embed.batch_jobs"), 0);
    // The next submission finds it and adopts it instead of sending its papers again.
    assert_eq!(submit(&mut client), (0, 0, 1));
    assert_eq!(count(&mut client, "SELECT count(*) FROM doctrove_embed.batch_papers"), 500);
    assert_eq!(
        embed_until_done(&mut client, 250),
        1,
        "the live path skips the adopted papers"
    );
    let (_, written, _, released) = collect_until_closed(&mut client, Duration::from_secs(60));
    assert_eq!((written, released), (500, 0));
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (500, 0, 0, 0));
    let stats = mock_stats(&scope);
    assert_eq!(
        counters(&stats, ["batches_created", "paid_twice", "inputs"]),
        [1, 0, 0],
        "{stats}"
    );
    record_figure(
        "kill -9 during a submission: the unrecorded batch adopted from its metadata; 500 of 500 written once, none paid twice",
    );
}

#[test]
fn kill_9_during_a_collection_loses_nothing_and_writes_nothing_twice() {
    let (cluster, mut client) = crash_cluster("batchkill_collect", "batch_hold=2000/");
    let scope = format!("batchkill_collect-{}", std::process::id());
    assert_eq!(submit(&mut client).1, 500);
    kill_9_during(
        client,
        "SELECT * FROM doctrove_embed.collect_batches()",
        Duration::from_millis(1000),
    );
    let mut client = cluster.reconnect_after_crash();
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM doctrove_embed.batch_papers"),
        500,
        "the claims survive the crash"
    );
    let (collected, written, _, _) = collect_until_closed(&mut client, Duration::from_secs(60));
    assert_eq!((collected, written), (1, 500));
    assert_eq!(
        collect_until_closed(&mut client, Duration::from_secs(10)),
        (0, 0, 0, 0),
        "collecting again does nothing"
    );
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (500, 0, 0, 0));
    let stats = mock_stats(&scope);
    assert_eq!(counters(&stats, ["batches_created", "paid_twice"]), [1, 0], "{stats}");
    record_figure("kill -9 during a collection: the next collection wrote 500 of 500 once; collecting again wrote nothing");
}

#[test]
fn cancelling_releases_the_papers_and_keeps_what_the_api_had_done() {
    let db = TestDb::new("batch_cancel");
    let mut client = db.connect();
    db.point_at_mock(&mut client, "dim=8/batch_delay=60000/");
    create_logged_papers(&mut client, 1000, 8);
    let first: i64 = client
        .query_one("SELECT papers FROM doctrove_embed.submit_batches(300)", &[])
        .unwrap()
        .get(0);
    assert_eq!(first, 300);
    assert_eq!(submit(&mut client).1, 700);
    assert_eq!(
        embed_until_done(&mut client, 250),
        1,
        "papers in open batches are not embedded live"
    );
    let cancelled: i32 = client
        .query_one("SELECT doctrove_embed.cancel_batches()", &[])
        .unwrap()
        .get(0);
    assert_eq!(cancelled, 2);
    // The mock cancels at once and keeps the half of each batch it had done: that half is
    // written, the rest released.
    let row = client
        .query_one(
            "SELECT sum(papers_written)::int, sum(papers_released)::int, bool_or(open), min(status) FROM doctrove_embed.batches",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, i32>(1),
            row.get::<_, bool>(2),
            row.get::<_, String>(3)
        ),
        (500, 500, false, "cancelled".into())
    );
    embed_until_done(&mut client, 250);
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (1000, 0, 0, 0));
    let stats = db.stats();
    assert_eq!(
        counters(&stats, ["batch_inputs", "inputs", "paid_twice"]),
        [500, 500, 0],
        "{stats}"
    );
    let bad = client
        .query_one("SELECT * FROM doctrove_embed.submit_batches(-1)", &[])
        .unwrap_err();
    assert_eq!(bad.code().map(|c| c.code()), Some("22023"));
}

#[test]
fn collecting_a_170_mb_output_file_keeps_the_backend_s_memory_bounded() {
    let db = TestDb::new("batch_memory");
    let mut client = db.connect();
    create_logged_papers(&mut client, 20_000, 1536);
    assert_eq!(submit(&mut client).1, 20_000);
    drop(client);
    // A fresh session, so its peak is this collection's.
    let mut client = db.connect();
    let ((_, written, _, _), before_kb, peak_kb) =
        with_peak_private_memory(&mut client, |client| collect_until_closed(client, Duration::from_secs(120)));
    assert_eq!(written, 20_000);
    // Each output line carries 1,536 floats in base64 (8,192 bytes) and its envelope.
    let output_mb = 20_000 * 8_500 / 1_000_000;
    record_figure(&format!(
        "collecting a batch of 20,000 vector(1536) papers (about {output_mb} MB of output): backend private memory {} MB before, {} MB at most while collecting",
        before_kb / 1024,
        peak_kb / 1024
    ));
    assert!(
        peak_kb < before_kb + 48 * 1024,
        "the backend's private memory grew from {before_kb} kB to {peak_kb} kB"
    );
    let t = tally(&mut client, 1536);
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (20_000, 0, 0, 0));
}

#[test]
fn a_batch_with_a_bad_line_or_one_the_api_forgot_holds_up_no_other() {
    let db = TestDb::new("batch_never_blocks");
    let mut client = db.connect();
    create_logged_papers(&mut client, 600, 8);
    // Batch 1's output file ends with a line that is not a result; batch 2's is clean. Both
    // finish 2 s after they are created, so both are collected below.
    db.point_at_mock(&mut client, "dim=8/bad_line=1/batch_delay=2000/");
    let first: i32 = client
        .query_one("SELECT batches FROM doctrove_embed.submit_batches(250)", &[])
        .unwrap()
        .get(0);
    db.point_at_mock(&mut client, "dim=8/batch_delay=2000/");
    let second: i32 = client
        .query_one("SELECT batches FROM doctrove_embed.submit_batches(250)", &[])
        .unwrap()
        .get(0);
    assert_eq!((first, second), (1, 1));
    let (collected, written, failed, released) = collect_until_closed(&mut client, Duration::from_secs(30));
    assert_eq!((collected, written, failed, released), (2, 500, 0, 0));
    let error: String = client
        .query_one("SELECT error FROM doctrove_embed.batches WHERE error IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(
        error.starts_with("lines of its result files that were not results: 1 ("),
        "{error}"
    );
    // Batch 3 is one the API no longer knows (another scope: 404 for it): each collection warns
    // and leaves it open, the others go on; after five failed collections its papers are
    // released and the live path embeds them.
    db.point_at_mock(&mut client, "dim=8/batch_delay=600000/");
    assert_eq!(submit(&mut client), (1, 100, 0));
    let stranger = format!("{}/s={}-elsewhere/dim=8/v1", mock_root(), db.scope);
    client
        .execute("SELECT set_config('doctrove_embed.api_base_url', $1, false)", &[&stranger])
        .unwrap();
    let mut released = 0;
    for attempt in 1..=5 {
        let row = client
            .query_one("SELECT * FROM doctrove_embed.collect_batches()", &[])
            .unwrap();
        released += row.get::<_, i64>("papers_released");
        let open = row.get::<_, i32>("batches_open");
        assert_eq!(open, i32::from(attempt < 5), "attempt {attempt}");
    }
    assert_eq!(released, 100);
    let error: String = client
        .query_one("SELECT error FROM doctrove_embed.batches WHERE papers = 100", &[])
        .unwrap()
        .get(0);
    assert!(error.starts_with("released after 5 failed collections"), "{error}");
    db.point_at_mock(&mut client, "dim=8/");
    embed_until_done(&mut client, 250);
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (600, 0, 0, 0));
    let stats = db.stats();
    record_figure(&format!(
        "a batch with a bad output line, a clean one, one the API forgot: {written} written by collection, 100 released after 5 failed collections, {} live, paid twice {}",
        stats["inputs"], stats["paid_twice"]
    ));
    assert_eq!(stats["paid_twice"].as_u64(), Some(0));
}

#[test]
fn a_cancel_waits_for_the_api_and_collects_what_it_finished() {
    let db = TestDb::new("batch_cancel_wait");
    let mut client = db.connect();
    create_logged_papers(&mut client, 100, 8);
    db.point_at_mock(&mut client, "dim=8/batch_delay=600000/cancel_delay=1500/");
    assert_eq!(submit(&mut client), (1, 100, 0));
    let cancelled: i32 = client
        .query_one("SELECT doctrove_embed.cancel_batches()", &[])
        .unwrap()
        .get(0);
    assert_eq!(cancelled, 1);
    let (status, open): (String, bool) = {
        let row = client
            .query_one("SELECT status, open FROM doctrove_embed.batches", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((status.as_str(), open), ("cancelling", true));
    // While the API is cancelling, the papers stay claimed: nothing is sent live.
    let live: i32 = client
        .query_one("SELECT successful_embeddings FROM embed_pending(100)", &[])
        .unwrap()
        .get(0);
    assert_eq!(live, 0);
    let (collected, written, failed, released) = collect_until_closed(&mut client, Duration::from_secs(30));
    assert_eq!((collected, written, failed, released), (1, 50, 0, 50));
    embed_until_done(&mut client, 250);
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (100, 0, 0, 0));
    let stats = db.stats();
    assert_eq!(
        counters(&stats, ["batches_cancelled", "batch_inputs", "inputs", "paid_twice"]),
        [1, 50, 50, 0],
        "{stats}"
    );
    // The next collection deletes the collected batch's files from the API: the input, the
    // output and the errors (the requests the cancel stopped).
    assert_eq!(stats["batch_files_deleted"].as_u64(), Some(0));
    client
        .query_one("SELECT * FROM doctrove_embed.collect_batches()", &[])
        .unwrap();
    assert_eq!(db.stats()["batch_files_deleted"].as_u64(), Some(3));
    let deleted: bool = client
        .query_one("SELECT files_deleted FROM doctrove_embed.batch_jobs", &[])
        .unwrap()
        .get(0);
    assert!(deleted);
}

#[test]
fn files_the_api_will_not_delete_are_given_up_after_five_tries_counted_apart_from_collections() {
    let db = TestDb::new("batch_delete_fail");
    let mut client = db.connect();
    create_logged_papers(&mut client, 100, 8);
    db.point_at_mock(&mut client, "dim=8/delete_fail=1/");
    assert_eq!(submit(&mut client), (1, 100, 0));
    let (collected, written, failed, released) = collect_until_closed(&mut client, Duration::from_secs(30));
    assert_eq!((collected, written, failed, released), (1, 100, 0, 0));
    // Each later collection tries to delete the batch's files, and the API refuses: five tries,
    // then they are left there. A collection never failed: its count stays 0.
    for attempt in 1..=6 {
        client
            .query_one("SELECT * FROM doctrove_embed.collect_batches()", &[])
            .unwrap();
        let row = client
            .query_one(
                "SELECT collect_failures, delete_failures, files_deleted FROM doctrove_embed.batch_jobs",
                &[],
            )
            .unwrap();
        let counts: (i32, i32, bool) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(counts, (0, attempt.min(5), attempt >= 5), "after collection {attempt}");
    }
    let stats = db.stats();
    assert_eq!(
        counters(&stats, ["batch_files_deleted", "batch_file_deletes_failed"]),
        [0, 5],
        "{stats}"
    );
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (100, 0, 0, 0));
}

#[test]
fn embedding_papers_with_huge_texts_keeps_the_backend_s_memory_bounded() {
    let db = TestDb::new("memory_huge_texts");
    let mut client = db.connect();
    // 1,000 papers whose title and abstract are each 131,056 bytes (the most of a text one input
    // can use), 262 MB of text read back in full.
    client
        .batch_execute(
            "CREATE TABLE doctrove_papers (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text,
                 doctrove_abstract text, doctrove_embedding vector(8));
             INSERT INTO doctrove_papers SELECT g, g || repeat(' lorem', 21842) || 'ips', repeat('ipsum ', 21842) || 'dolo', NULL
                 FROM generate_series(1, 1000) g;
             SELECT doctrove_embed.create_pending_index();",
        )
        .unwrap();
    drop(client);
    let mut client = db.connect();
    db.point_at_mock(&mut client, "dim=8/");
    let (done, before_kb, peak_kb) = with_peak_private_memory(&mut client, |client| {
        client
            .query_one("SELECT successful_embeddings FROM embed_pending(1000)", &[])
            .unwrap()
            .get::<_, i32>(0)
    });
    record_figure(&format!(
        "embed_pending(1000) over papers with 131,056-byte titles and abstracts: {done} papers in the call (fetch_text_budget 8 MB), backend private memory {} MB before, {} MB at most",
        before_kb / 1024,
        peak_kb / 1024
    ));
    record_attack(
        "take the server's memory with embed_pending(1000) over huge texts (128 MB or more of backend growth)",
        peak_kb >= before_kb + 128 * 1024,
    );
    assert!(peak_kb < before_kb + 128 * 1024, "grew from {before_kb} kB to {peak_kb} kB");
    assert!(done > 0 && done < 1000, "{done}");
    assert_eq!(db.stats()["inputs"].as_i64(), Some(i64::from(done)));
    assert_eq!(
        count(&mut client, "SELECT count(doctrove_embedding) FROM doctrove_papers"),
        i64::from(done)
    );
}

#[test]
fn submitting_50000_papers_keeps_the_backend_s_memory_bounded() {
    let db = TestDb::new("memory_submission");
    let mut client = db.connect();
    create_logged_papers(&mut client, 50_000, 8);
    client
        .batch_execute("UPDATE doctrove_papers SET doctrove_abstract = repeat('An abstract of about the usual length. ', 40)")
        .unwrap();
    drop(client);
    let mut client = db.connect();
    db.point_at_mock(&mut client, "dim=8/batch_delay=600000/");
    let ((batches, papers, _), before_kb, peak_kb) = with_peak_private_memory(&mut client, submit);
    record_figure(&format!(
        "submitting 50,000 papers of 1.6 kB: {batches} batches, backend private memory {} MB before, {} MB at most",
        before_kb / 1024,
        peak_kb / 1024
    ));
    assert_eq!(papers, 50_000);
    assert!(batches > 1, "{batches}");
    assert!(peak_kb < before_kb + 128 * 1024, "grew from {before_kb} kB to {peak_kb} kB");
    assert_eq!(db.stats()["batches_created"].as_i64(), Some(i64::from(batches)));
}

/// How a forged batch's metadata is sealed.
enum Seal {
    /// None: someone else holding the key copied the metadata they can list.
    Missing,
    /// With this installation's secret: a batch this installation made (a duplicate).
    Ours,
    /// A copy of the seal and submission of a batch this installation recorded (a replay).
    CopiedFrom(String),
}

/// Creates on the mock, as someone holding the key would, a batch whose input lines name papers
/// 1 to 100 with `text(id)`, carrying this database's metadata as anyone who can list the
/// account's batches reads it (with another cluster identifier when `cluster` is given), sealed
/// as `seal` says; returns its id.
fn forge_batch(db: &TestDb, client: &mut Client, text: impl Fn(i32) -> String, cluster: Option<&str>, seal: Seal) -> String {
    let config = embed_core::ApiConfig {
        base_url: format!("{}/s={}/dim=8/v1", mock_root(), db.scope),
        api_key: "sk-someone-else".into(),
        api_key_header: "Authorization".into(),
        model: "text-embedding-3-small".into(),
        dimensions: 0,
        timeout: Duration::from_secs(10),
    };
    let lines: String = (1..=100)
        .map(|id| embed_core::batch_file::request_line(&id.to_string(), &config.model, &text(id), 0))
        .collect();
    let file = embed_core::batch_client::upload_batch_file(&config, "forged.jsonl", lines.as_bytes()).unwrap();
    let ours: String = client
        .query_one(
            "SELECT c.system_identifier::text || '/' || d.oid FROM pg_control_system() c, pg_database d \
             WHERE d.datname = current_database()",
            &[],
        )
        .unwrap()
        .get(0);
    let cluster = cluster.map_or(ours, str::to_string);
    let table = "public.doctrove_papers".to_string();
    let (submission, seal) = match seal {
        Seal::Missing => ("forged".to_string(), None),
        Seal::Ours => {
            let secret: String = client
                .query_one("SELECT secret FROM doctrove_embed.installation", &[])
                .unwrap()
                .get(0);
            let fields = [cluster.as_str(), db.name.as_str(), table.as_str(), "default", "duplicate"];
            (
                "duplicate".to_string(),
                Some(embed_core::batch_seal::seal(secret.as_bytes(), &fields)),
            )
        }
        Seal::CopiedFrom(batch_id) => {
            let info = embed_core::batch_client::retrieve_batch(&config, &batch_id).unwrap();
            (
                info.metadata["doctrove_submission"].clone(),
                Some(info.metadata["doctrove_seal"].clone()),
            )
        }
    };
    let mut metadata = std::collections::BTreeMap::from([
        ("doctrove_database".to_string(), db.name.clone()),
        ("doctrove_cluster".to_string(), cluster),
        ("doctrove_table".to_string(), table),
        ("doctrove_job".to_string(), "default".to_string()),
        ("doctrove_submission".to_string(), submission),
    ]);
    if let Some(seal) = seal {
        metadata.insert("doctrove_seal".to_string(), seal);
    }
    embed_core::batch_client::create_batch(&config, &file, &metadata).unwrap().id
}

#[test]
fn a_paper_is_claimed_by_one_open_batch_only() {
    let db = TestDb::new("batch_one_claim");
    let mut client = db.connect();
    create_logged_papers(&mut client, 100, 8);
    db.point_at_mock(&mut client, "dim=8/batch_delay=600000/");
    assert_eq!(submit(&mut client), (1, 100, 0));
    // A second batch naming the same papers (here with their own texts) is adopted, but claims
    // none of them: each stays with the first.
    forge_batch(
        &db,
        &mut client,
        |id| format!("Title: Paper {id} Abstract: Abstract of paper {id}"),
        None,
        Seal::Ours,
    );
    assert_eq!(submit(&mut client), (0, 0, 1));
    let (claims, batches): (i64, i64) = {
        let row = client
            .query_one(
                "SELECT count(*), count(DISTINCT batch_id) FROM doctrove_embed.batch_papers",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((claims, batches), (100, 1));
}

#[test]
fn a_batch_made_by_anyone_else_with_the_key_writes_nothing() {
    let db = TestDb::new("batch_forged");
    let mut client = db.connect();
    create_logged_papers(&mut client, 100, 8);
    db.point_at_mock(&mut client, "dim=8/");
    // Someone else holding the key (a staging copy, a leaked key) creates batches with this
    // database's and table's metadata whose input lines name the pending papers with other texts:
    // unsealed, of another cluster (a copy restored elsewhere), and carrying the seal and
    // submission copied from a batch this installation recorded.
    db.point_at_mock(&mut client, "dim=8/batch_delay=600000/");
    forge_batch(&db, &mut client, |id| format!("EVIL {id}"), None, Seal::Missing);
    forge_batch(
        &db,
        &mut client,
        |id| format!("EVIL {id}"),
        Some("7000000000000000000/5"),
        Seal::Missing,
    );
    let recorded: String = {
        client
            .batch_execute("INSERT INTO doctrove_papers (doctrove_paper_id, doctrove_title) VALUES (1001, 'Recorded')")
            .unwrap();
        let row = client
            .query_one("SELECT batches FROM doctrove_embed.submit_batches(1)", &[])
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
        client
            .query_one("SELECT batch_id FROM doctrove_embed.batch_jobs", &[])
            .unwrap()
            .get(0)
    };
    forge_batch(&db, &mut client, |id| format!("EVIL {id}"), None, Seal::CopiedFrom(recorded));
    // None is adopted: no paper is claimed by them, and the live path embeds every paper.
    let adopted: i64 = {
        client
            .batch_execute("SELECT * FROM doctrove_embed.collect_batches()")
            .unwrap();
        client
            .query_one("SELECT count(*) FROM doctrove_embed.batch_jobs", &[])
            .unwrap()
            .get(0)
    };
    db.point_at_mock(&mut client, "dim=8/");
    client.batch_execute("SELECT doctrove_embed.cancel_batches()").unwrap();
    embed_until_done(&mut client, 250);
    let t = tally(&mut client, 8);
    record_attack(
        "have a batch with this database's metadata (unsealed, another cluster's, or a copied seal) adopted",
        adopted != 1 || t.wrong > 0,
    );
    assert_eq!(adopted, 1, "only the batch this installation submitted is recorded");
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (101, 0, 0, 0));
}

#[test]
fn a_submission_cut_by_statement_timeout_creates_no_batch_and_pays_nothing_twice() {
    let db = TestDb::new("batch_timeout");
    let mut client = db.connect();
    create_logged_papers(&mut client, 300, 8);
    db.point_at_mock(&mut client, "dim=8/upload_hold=3000/");
    client.batch_execute("SET statement_timeout = '1s'").unwrap();
    let outcome = client.query("SELECT * FROM doctrove_embed.submit_batches()", &[]);
    let code = outcome.as_ref().err().and_then(|e| e.code()).map(|c| c.code().to_string());
    assert_eq!(code.as_deref(), Some("57014"), "{outcome:?}");
    // The upload finishes on the API after the statement has rolled back: no batch follows it,
    // and the file is deleted.
    std::thread::sleep(Duration::from_millis(4000));
    let stats = db.stats();
    assert_eq!(
        counters(&stats, ["batch_files_uploaded", "batches_created", "batch_files_deleted"]),
        [1, 0, 1],
        "{stats}"
    );
    client.batch_execute("RESET statement_timeout").unwrap();
    db.point_at_mock(&mut client, "dim=8/");
    assert_eq!(submit(&mut client), (1, 300, 0));
    let (_, written, _, _) = collect_until_closed(&mut client, Duration::from_secs(30));
    assert_eq!(written, 300);
    let t = tally(&mut client, 8);
    let stats = db.stats();
    record_figure(&format!(
        "a submission cut by statement_timeout during its upload: batches created {}, then {written} written once, paid twice {}",
        stats["batches_created"], stats["paid_twice"]
    ));
    assert_eq!((t.correct, t.written_twice), (300, 0));
    assert_eq!(
        counters(&stats, ["batches_created", "batch_inputs", "paid_twice"]),
        [1, 300, 0],
        "{stats}"
    );
}

#[test]
fn the_backfill_procedure_commits_each_batch_as_it_goes() {
    let db = TestDb::new("batch_backfill_procedure");
    let mut client = db.connect();
    create_logged_papers(&mut client, 1200, 8);
    db.point_at_mock(&mut client, "dim=8/");
    client.batch_execute("SET doctrove_embed.batch_api_max_papers = 500").unwrap();
    client.batch_execute("CALL doctrove_embed.submit_backfill()").unwrap();
    // submitted_at is the start of the transaction that recorded the batch.
    let (batches, transactions): (i64, i64) = {
        let row = client
            .query_one(
                "SELECT count(*), count(DISTINCT submitted_at) FROM doctrove_embed.batch_jobs",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((batches, transactions), (3, 3), "one batch per transaction");
    // Each call of submit_batches() inside collects what the API has finished first.
    collect_until_closed(&mut client, Duration::from_secs(30));
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing, t.written_twice), (1200, 0, 0));
    let stats = db.stats();
    assert_eq!(
        counters(&stats, ["batch_inputs", "inputs", "paid_twice"]),
        [1200, 0, 0],
        "{stats}"
    );
}

/// Collects job `job`'s batches until none is open; returns (written, adopted).
fn collect_job_until_closed(client: &mut Client, job: &str, limit: Duration) -> i64 {
    let start = Instant::now();
    let mut written = 0;
    loop {
        let row = client
            .query_one("SELECT * FROM doctrove_embed.collect_batches($1)", &[&job])
            .unwrap();
        written += row.get::<_, i64>("papers_written");
        if row.get::<_, i32>("batches_open") == 0 {
            return written;
        }
        assert!(start.elapsed() < limit, "batches of {job} still open after {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_job_s_batches_fill_its_own_column_and_only_that_job_adopts_them() {
    let db = TestDb::new("batch_of_job");
    let mut client = db.connect();
    create_logged_papers(&mut client, 300, 8);
    client
        .batch_execute(
            "ALTER TABLE doctrove_papers ADD COLUMN local_embedding vector(8), ADD COLUMN local_model text;
             SELECT doctrove_embed.create_job('local', 'doctrove_papers', 'local_embedding', 'local-model',
                 model_version_column => 'local_model', use_batch_api => true,
                 text_format => 'passage: {title}[. {abstract}]');",
        )
        .unwrap();
    db.point_at_mock(&mut client, "dim=8/batch_delay=300/");
    let row = client
        .query_one("SELECT * FROM doctrove_embed.submit_batches(NULL, 'local')", &[])
        .unwrap();
    assert_eq!((row.get::<_, i32>("batches"), row.get::<_, i64>("papers")), (1, 300));
    // The job default's papers are not claimed by another job's batch: its live path sends them.
    assert_eq!(count(&mut client, "SELECT get_papers_needing_embeddings_count()"), 300);
    assert_eq!(embed_until_done(&mut client, 250), 3);
    // A batch of the job left unrecorded (its submission rolled back after the API made it, as
    // a crash before the commit would leave it).
    client.batch_execute("INSERT INTO doctrove_papers (doctrove_paper_id, doctrove_title) SELECT g, 'Late ' || g FROM generate_series(301, 320) g").unwrap();
    client
        .batch_execute("BEGIN; SELECT * FROM doctrove_embed.submit_batches(NULL, 'local'); ROLLBACK;")
        .unwrap();
    // The job default's collection does not adopt it: it names the job local.
    let default_adopted: i64 = {
        client
            .batch_execute("SELECT * FROM doctrove_embed.collect_batches()")
            .unwrap();
        count(
            &mut client,
            "SELECT count(*) FROM doctrove_embed.batch_jobs WHERE job = 'default'",
        )
    };
    std::thread::sleep(Duration::from_millis(400));
    let written = collect_job_until_closed(&mut client, "local", Duration::from_secs(30));
    let recorded: Vec<(String, String, bool, i32)> = client
        .query(
            "SELECT b.job, j.model, b.adopted, b.papers_written FROM doctrove_embed.batches b \
             JOIN doctrove_embed.batch_jobs j USING (batch_id) ORDER BY b.submitted_at",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    record_attack(
        "have another job's batch on the same table adopted and written into this job's column",
        default_adopted != 0,
    );
    assert_eq!(default_adopted, 0);
    assert_eq!(written, 320);
    assert_eq!(
        recorded,
        vec![
            ("local".to_string(), "local-model".to_string(), false, 300),
            ("local".to_string(), "local-model".to_string(), true, 20),
        ]
    );
    // Every paper's job column holds the vector of the job's own text, made by its model; the
    // job default's column holds the default text's vector (300 live, the 20 late ones pending).
    let rows = client
        .query(
            "SELECT doctrove_embed.input_text(doctrove_title, doctrove_abstract, 'passage: {title}[. {abstract}]'),
                    local_embedding::real[], local_model FROM doctrove_papers",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 320);
    for row in &rows {
        let text: String = row.get(0);
        assert_eq!(
            row.get::<_, Option<Vec<f32>>>(1),
            Some(doctrove_mock::vector_for(&text, 8)),
            "{text}"
        );
        assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("local-model"));
    }
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing, t.wrong, t.written_twice), (300, 20, 0, 0));
    let stats = db.stats();
    assert_eq!(stats["batch_inputs"], 320, "{stats}");
    assert_eq!(stats["batch_duplicate_inputs"], 0, "{stats}");
    assert_eq!(stats["batch_last_model"], "local-model", "{stats}");
    assert_eq!(stats["inputs"], 300, "{stats}");
    assert_eq!(stats["duplicate_inputs"], 0, "{stats}");
}
