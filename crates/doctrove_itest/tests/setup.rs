//! Setting the extension up on a server that does not preload it: everything but the workers
//! and the shared rate limit works, and no mistake ends the session.

use doctrove_itest::cluster::Cluster;
use doctrove_itest::{mock_root, mock_stats};

#[test]
fn without_the_preload_the_extension_works_and_the_session_survives() {
    let cluster = Cluster::start("setup_no_preload", &[]);
    let mut client = cluster.connect();
    client
        .batch_execute("CREATE EXTENSION doctrove_embed CASCADE")
        .expect("CREATE EXTENSION without the preload");
    client
        .batch_execute("LOAD 'doctrove_embed'")
        .expect("LOAD without the preload");
    let alive: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(alive, 1, "the session survived");
    let scope = format!("setup-{}", std::process::id());
    client
        .batch_execute(&format!(
            "SET doctrove_embed.api_base_url = '{}/s={scope}/dim=8/v1';
             SET doctrove_embed.api_key = 'sk-no-preload';
             CREATE TABLE doctrove_papers (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text,
                 doctrove_abstract text, doctrove_embedding vector(8));
             INSERT INTO doctrove_papers VALUES (1, 'Not preloaded', NULL, NULL);",
            mock_root()
        ))
        .unwrap();
    let done: i32 = client
        .query_one("SELECT successful_embeddings FROM embed_pending(10)", &[])
        .unwrap()
        .get(0);
    assert_eq!(done, 1);
    let stored: Vec<f32> = client
        .query_one("SELECT doctrove_embedding::real[] FROM doctrove_papers", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, doctrove_mock::vector_for("Title: Not preloaded", 8));
    assert_eq!(mock_stats(&scope)["requests"], 1);
    let workers: String = client.query_one("SHOW doctrove_embed.workers", &[]).unwrap().get(0);
    assert_eq!(workers, "1", "the setting exists (and has no effect without the preload)");
}
