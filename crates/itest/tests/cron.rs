//! pg_cron (postgresql-15-cron, preloaded) running `embed_pending` on a schedule.

use std::time::Duration;

use doctrove_itest::cluster::{wait_for, Cluster};
use doctrove_itest::{create_logged_papers, mock_root, mock_stats, tally};

#[test]
fn a_pg_cron_job_embeds_pending_papers() {
    let scope = format!("cron-{}", std::process::id());
    let cluster = Cluster::start(
        "cron",
        55448,
        &[
            "shared_preload_libraries = 'pg_cron,doctrove_embed'".to_string(),
            "cron.database_name = 'postgres'".to_string(),
            "doctrove_embed.workers = 0".to_string(),
            format!("doctrove_embed.api_base_url = '{}/s={scope}/dim=8/v1'", mock_root()),
        ],
    );
    let mut client = cluster.connect();
    client.batch_execute("CREATE EXTENSION pg_cron; CREATE EXTENSION doctrove_embed CASCADE").unwrap();
    create_logged_papers(&mut client, 300, 8);
    client.execute("SELECT cron.schedule('embed', '* * * * *', 'SELECT embed_pending(500)')", &[]).unwrap();
    // pg_cron 1.4 runs jobs on the minute.
    wait_for("the scheduled job to embed every paper", Duration::from_secs(150), || {
        let pending: i64 =
            client.query_one("SELECT count(*) FROM doctrove_papers WHERE doctrove_embedding IS NULL", &[]).unwrap().get(0);
        (pending == 0).then_some(())
    });
    let t = tally(&mut client, 8);
    assert_eq!((t.correct, t.missing, t.written_twice), (300, 0, 0));
    let succeeded: i64 = client
        .query_one("SELECT count(*) FROM cron.job_run_details WHERE status = 'succeeded' AND command LIKE '%embed_pending%'", &[])
        .unwrap()
        .get(0);
    assert!(succeeded >= 1);
    assert_eq!(mock_stats(&scope)["inputs"], 300);
}
