//! `embed_pending` through real client sessions on the installed extension.

use doctrove_itest::TestDb;
use doctrove_mock::vector_for;
use postgres::Client;

/// The DocTrove schema's table, with the columns the extension reads and writes.
fn create_doctrove_papers(client: &mut Client, papers: i64) {
    client
        .batch_execute(&format!(
            "CREATE TABLE doctrove_papers (
                 doctrove_paper_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                 doctrove_source text NOT NULL DEFAULT 'arxiv',
                 doctrove_title text,
                 doctrove_abstract text,
                 doctrove_embedding vector(1536),
                 embedding_model_version text,
                 updated_at timestamptz DEFAULT now());
             INSERT INTO doctrove_papers (doctrove_title, doctrove_abstract)
                 SELECT 'Paper ' || g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'Abstract of paper ' || g || '.' END
                 FROM generate_series(1, {papers}) g;"
        ))
        .unwrap();
}

/// Every embedded paper holds exactly the mock's vector for its text; returns how many.
fn check_vectors(client: &mut Client) -> usize {
    let rows = client
        .query(
            "SELECT doctrove_embed.input_text(doctrove_title, doctrove_abstract), doctrove_embedding::real[]
             FROM doctrove_papers WHERE doctrove_embedding IS NOT NULL",
            &[],
        )
        .unwrap();
    for row in &rows {
        let text: String = row.get(0);
        let vector: Vec<f32> = row.get(1);
        assert_eq!(vector, vector_for(&text, 1536), "wrong vector for {text:?}");
    }
    rows.len()
}

#[test]
fn one_call_embeds_250_papers_with_the_exact_vectors_of_their_texts() {
    let db = TestDb::new("embed_250");
    let mut client = db.connect();
    create_doctrove_papers(&mut client, 300);
    let row = client.query_one("SELECT * FROM embed_pending(250)", &[]).unwrap();
    assert_eq!(row.get::<_, i32>("successful_embeddings"), 250);
    assert_eq!(row.get::<_, i32>("failed_embeddings"), 0);
    assert!(row.get::<_, f64>("api_ms") > 0.0);
    assert_eq!(check_vectors(&mut client), 250);
    let remaining: i64 = client
        .query_one("SELECT get_papers_needing_embeddings_count()", &[])
        .unwrap()
        .get(0);
    assert_eq!(remaining, 50);
    let versions: i64 = client
        .query_one(
            "SELECT count(*) FROM doctrove_papers WHERE embedding_model_version = 'text-embedding-3-small'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(versions, 250);
    assert_eq!(db.stats()["requests"], 1);
    assert_eq!(db.stats()["inputs"], 250);
}

#[test]
fn concurrent_sessions_take_disjoint_papers() {
    let db = TestDb::new("concurrent");
    let mut setup = db.connect();
    create_doctrove_papers(&mut setup, 2000);
    setup.query_one("SELECT doctrove_embed.create_pending_index()", &[]).unwrap();
    let sessions: Vec<_> = (0..2)
        .map(|_| {
            let mut client = db.connect();
            // A slow API keeps both sessions' batches in flight at once.
            db.point_at_mock(&mut client, "latency=40/");
            std::thread::spawn(move || {
                let mut embedded = 0;
                let mut calls = 0;
                loop {
                    let n: i32 = client
                        .query_one("SELECT successful_embeddings FROM embed_pending(100)", &[])
                        .unwrap()
                        .get(0);
                    calls += 1;
                    if n == 0 {
                        return (embedded, calls);
                    }
                    embedded += n;
                }
            })
        })
        .collect();
    let results: Vec<(i32, i32)> = sessions.into_iter().map(|s| s.join().unwrap()).collect();
    let total: i32 = results.iter().map(|r| r.0).sum();
    assert_eq!(total, 2000);
    assert!(
        results.iter().all(|r| r.0 > 0),
        "both sessions should have embedded papers: {results:?}"
    );
    let stats = db.stats();
    assert_eq!(stats["inputs"], 2000);
    assert_eq!(stats["distinct_inputs"], 2000);
    assert_eq!(stats["duplicate_inputs"], 0);
    assert_eq!(check_vectors(&mut setup), 2000);
}

#[test]
fn a_failed_call_leaves_every_row_unchanged() {
    let db = TestDb::new("failed_call");
    let mut client = db.connect();
    create_doctrove_papers(&mut client, 20);
    db.point_at_mock(&mut client, "status=500/");
    let error = client.query_one("SELECT * FROM embed_pending(250)", &[]).unwrap_err();
    let db_error = error.as_db_error().expect("a server error");
    assert_eq!(db_error.code().code(), "38000");
    assert_eq!(db_error.message(), "the embeddings API failed (HTTP 500)");
    let embedded: i64 = client
        .query_one(
            "SELECT count(*) FROM doctrove_papers WHERE doctrove_embedding IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(embedded, 0);
    let pending: i64 = client
        .query_one("SELECT get_papers_needing_embeddings_count()", &[])
        .unwrap()
        .get(0);
    assert_eq!(pending, 20);
}
