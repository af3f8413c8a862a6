//! pg_cron (preloaded) running the extension's functions on a schedule.

use std::time::Duration;

use doctrove_itest::cluster::{wait_for, Cluster};
use doctrove_itest::{counters, create_logged_papers, mock_root, mock_stats, tally};
use postgres::Client;

/// A cluster with pg_cron and the extension, 300 papers, calling the mock under `scope`.
fn cron_cluster(name: &str, scope: &str, switches: &str) -> (Cluster, Client) {
    let cluster = Cluster::start(
        name,
        &[
            "shared_preload_libraries = 'pg_cron,doctrove_embed'".to_string(),
            "cron.database_name = 'postgres'".to_string(),
            "doctrove_embed.workers = 0".to_string(),
            format!("doctrove_embed.api_base_url = '{}/s={scope}/dim=8/{switches}v1'", mock_root()),
        ],
    );
    let mut client = cluster.connect();
    client
        .batch_execute("CREATE EXTENSION pg_cron; CREATE EXTENSION doctrove_embed CASCADE")
        .unwrap();
    create_logged_papers(&mut client, 300, 8);
    (cluster, client)
}

/// Schedules `command` every minute (pg_cron 1.4 runs jobs on the minute), waits until every
/// paper is embedded, checks each vector, and returns how many runs of it succeeded.
fn run_on_schedule(client: &mut Client, command: &str) -> i64 {
    client
        .execute("SELECT cron.schedule('job', '* * * * *', $1)", &[&command])
        .unwrap();
    wait_for("the scheduled job to embed every paper", Duration::from_secs(200), || {
        let pending: i64 = client
            .query_one("SELECT count(*) FROM doctrove_papers WHERE doctrove_embedding IS NULL", &[])
            .unwrap()
            .get(0);
        (pending == 0).then_some(())
    });
    let t = tally(client, 8);
    assert_eq!((t.correct, t.missing, t.written_twice), (300, 0, 0));
    client
        .query_one(
            "SELECT count(*) FROM cron.job_run_details WHERE status = 'succeeded' AND command = $1",
            &[&command],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_pg_cron_job_embeds_pending_papers() {
    let scope = format!("cron-{}", std::process::id());
    let (_cluster, mut client) = cron_cluster("cron", &scope, "");
    assert!(run_on_schedule(&mut client, "SELECT embed_pending(500)") >= 1);
    assert_eq!(mock_stats(&scope)["inputs"], 300);
}

#[test]
fn one_scheduled_submit_batches_does_a_whole_backfill_through_the_batch_api() {
    let scope = format!("cron-batches-{}", std::process::id());
    let (_cluster, mut client) = cron_cluster("cron_batches", &scope, "batch_delay=1000/");
    // The first run submits; the next collects what the API finished (and submits what is left).
    let runs = run_on_schedule(&mut client, "SELECT doctrove_embed.submit_batches()");
    assert!(runs >= 2, "{runs} runs");
    let stats = mock_stats(&scope);
    assert_eq!(
        counters(&stats, ["batch_inputs", "inputs", "paid_twice"]),
        [300, 0, 0],
        "{stats}"
    );
}
