//! Search on the installed extension against the mock: 50,000 results streamed with a bounded
//! backend memory, in the exact order of the known vectors.

use doctrove_itest::{with_peak_private_memory, TestDb};

#[test]
fn fifty_thousand_results_stream_with_a_bounded_backend_memory() {
    let db = TestDb::new("search_stream");
    let mut client = db.connect();
    // 60,000 papers with distinct vectors and 2 kB titles: held at once, 50,000 results would
    // take 100 MB of the backend.
    client
        .batch_execute(
            "CREATE TABLE doctrove_papers (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text,
                 doctrove_abstract text, doctrove_embedding vector(8));
             INSERT INTO doctrove_papers
             SELECT g, repeat('t', 2000) || g, NULL,
                    ARRAY[sin(g), cos(g), sin(g * 0.7), cos(g * 1.3), sin(g * 2.1), cos(g * 0.3), sin(g * 1.7), 1]::real[]::vector
             FROM generate_series(1, 60000) g;
             ANALYZE doctrove_papers;",
        )
        .unwrap();
    db.point_at_mock(&mut client, "dim=8/");
    let query = doctrove_mock::vector_for("stream these papers", 8);
    let literal = format!("[{}]", query.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","));
    let exact: Vec<String> = client
        .query(
            &format!(
                "SELECT doctrove_paper_id::text FROM doctrove_papers ORDER BY doctrove_embedding <=> '{literal}'::vector LIMIT 50000"
            ),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // The first search loads what a search loads once (the library's code, the catalogs).
    client
        .query("SELECT paper_id FROM doctrove_embed.search('warm up', 10, NULL)", &[])
        .unwrap();
    let (rows, before_kb, peak_kb) = with_peak_private_memory(&mut client, |c| {
        c.query(
            "SELECT paper_id, similarity, length(title) FROM doctrove_embed.search('stream these papers', 50000, NULL)",
            &[],
        )
        .unwrap()
    });
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let grown_mb = (peak_kb.saturating_sub(before_kb)) as f64 / 1024.0;
    println!("50,000 results of 2 kB titles: the backend grew {grown_mb:.1} MB at most");
    doctrove_itest::record_figure(&format!(
        "search of 50,000 results with 2 kB titles: backend private memory grew {grown_mb:.1} MB at most"
    ));
    assert_eq!(ids.len(), 50_000);
    assert_eq!(ids, exact, "not the exact order of the vectors");
    assert!(rows.iter().all(|r| r.get::<_, i32>(2) > 2000));
    let similarities: Vec<f64> = rows.iter().map(|r| r.get(1)).collect();
    assert!(similarities.windows(2).all(|w| w[0] >= w[1]));
    assert!(grown_mb < 40.0, "the backend held the results: it grew {grown_mb:.1} MB");
}
