// `#[pg_test]`s of search with a threshold, filters and columns, included in `tests`: the rows
// are checked against an exact ordering of the mock's known vectors.

/// A paper of [`papers_with_fields`]: id, vector, source, publication date, authors, score.
type FieldedPaper = (i64, Vec<f32>, String, String, Vec<String>, Option<i32>);

/// 40 embedded papers with a source, a publication date, authors and a score (NULL for every
/// fifth); returns each with its vector and those fields.
fn papers_with_fields() -> Vec<FieldedPaper> {
    create_papers("bigint", "(16)");
    Spi::run(
        "ALTER TABLE doctrove_papers ADD COLUMN doctrove_source text, ADD COLUMN published date, \
         ADD COLUMN authors text[], ADD COLUMN score integer",
    )
    .unwrap();
    let papers = embedded_papers(40);
    Spi::run(
        "UPDATE doctrove_papers SET doctrove_source = CASE WHEN doctrove_paper_id % 3 = 0 THEN 'arxiv' ELSE 'biorxiv' END, \
         published = date '2023-06-01' + (doctrove_paper_id * 10)::int, \
         authors = CASE WHEN doctrove_paper_id % 4 = 0 THEN ARRAY['Ada', 'Bo'] ELSE ARRAY['Cy'] END, \
         score = CASE WHEN doctrove_paper_id % 5 = 0 THEN NULL ELSE doctrove_paper_id::int END",
    )
    .unwrap();
    papers
        .into_iter()
        .map(|(id, v)| {
            let source = if id % 3 == 0 { "arxiv" } else { "biorxiv" };
            let published = Spi::get_one::<String>(&format!("SELECT (date '2023-06-01' + {}::int)::text", id * 10))
                .unwrap()
                .unwrap();
            let authors = if id % 4 == 0 { vec!["Ada".to_string(), "Bo".to_string()] } else { vec!["Cy".to_string()] };
            let score = (id % 5 != 0).then_some(id as i32);
            (id, v, source.to_string(), published, authors, score)
        })
        .collect()
}

/// The ids a search returns, in order.
fn searched(sql: &str) -> Vec<String> {
    ids(&format!("SELECT paper_id FROM {sql}"))
}

#[pg_test]
fn a_threshold_keeps_the_papers_at_or_above_it_and_a_filter_of_each_kind_keeps_its_papers() {
    use_mock("search_filters", "dim=16/");
    let papers = papers_with_fields();
    let query = vector_for("graph neural networks", 16);
    let all: Vec<(i64, Vec<f32>)> = papers.iter().map(|p| (p.0, p.1.clone())).collect();
    // The threshold halfway between the 7th and 8th most similar: exactly 7 papers pass.
    let mut similarities: Vec<f64> = all.iter().map(|(_, v)| 1.0 - cosine_distance(&query, v)).collect();
    similarities.sort_by(|a, b| b.partial_cmp(a).unwrap());
    let threshold = (similarities[6] + similarities[7]) / 2.0;
    let expected: Vec<String> = exact_order(&query, &all).into_iter().take(7).collect();
    assert_eq!(
        searched(&format!("doctrove_embed.search('graph neural networks', 100, {threshold})")),
        expected
    );
    let similarity = Spi::get_one::<f64>(&format!(
        "SELECT min(similarity) FROM doctrove_embed.search('graph neural networks', 100, {threshold})"
    ))
    .unwrap()
    .unwrap();
    assert!((similarity - similarities[6]).abs() < 1e-6, "{similarity} vs {}", similarities[6]);

    let keep = |pred: &dyn Fn(&FieldedPaper) -> bool| -> Vec<String> {
        let kept: Vec<(i64, Vec<f32>)> = papers.iter().filter(|p| pred(p)).map(|p| (p.0, p.1.clone())).collect();
        exact_order(&query, &kept).into_iter().take(5).collect()
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        (r#"{"doctrove_source": "arxiv"}"#, keep(&|p| p.2 == "arxiv")),
        (r#"{"published": {">=": "2024-01-01", "<": "2024-03-01"}}"#, keep(&|p| p.3.as_str() >= "2024-01-01" && p.3.as_str() < "2024-03-01")),
        (r#"{"authors": {"@>": ["Ada"]}}"#, keep(&|p| p.4.contains(&"Ada".to_string()))),
        (r#"{"doctrove_source": {"in": ["arxiv", "medrxiv"]}, "score": {">": 20}}"#, keep(&|p| p.2 == "arxiv" && p.5.is_some_and(|s| s > 20))),
        (r#"{"score": null}"#, keep(&|p| p.5.is_none())),
        (r#"{"score": {"<>": null}, "doctrove_source": {"<>": "arxiv"}}"#, keep(&|p| p.5.is_some() && p.2 != "arxiv")),
    ];
    for (filter, expected) in cases {
        assert!(!expected.is_empty(), "{filter} keeps nothing: the case proves nothing");
        assert_eq!(
            searched(&format!("doctrove_embed.search('graph neural networks', 5, NULL, '{filter}')")),
            expected,
            "{filter}"
        );
    }
    // The columns asked for come back as a JSON object.
    let data = Spi::get_one::<pgrx::JsonB>(
        "SELECT data FROM doctrove_embed.search('graph neural networks', 1, NULL, '{\"doctrove_paper_id\": 12}', \
         ARRAY['doctrove_source', 'published', 'authors'])",
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        data.0,
        serde_json::json!({"doctrove_source": papers[11].2, "published": papers[11].3, "authors": papers[11].4})
    );
    assert_eq!(papers[11].4, vec!["Ada".to_string(), "Bo".to_string()]);
    // The batch, then one query: the other 8 searches of the same text come from the cache.
    assert_eq!(stats("search_filters")["requests"], 2);
}

#[pg_test]
fn a_selective_filter_over_an_hnsw_index_still_returns_every_match_in_exact_order() {
    use_mock("search_selective", "dim=16/");
    let papers = papers_with_fields();
    Spi::run("SELECT doctrove_embed.create_hnsw_index()").unwrap();
    let query = vector_for("protein folding", 16);
    let kept: Vec<(i64, Vec<f32>)> = papers.iter().filter(|p| p.0 % 4 == 0).map(|p| (p.0, p.1.clone())).collect();
    assert_eq!(
        searched(r#"doctrove_embed.search('protein folding', 100, NULL, '{"authors": {"@>": ["Bo"]}}')"#),
        exact_order(&query, &kept)
    );
    // More rows than hnsw.ef_search (40) without a filter: all of them, nearest first.
    let all: Vec<(i64, Vec<f32>)> = papers.iter().map(|p| (p.0, p.1.clone())).collect();
    assert_eq!(
        searched("doctrove_embed.search('protein folding', 100, NULL)").len(),
        exact_order(&query, &all).len()
    );
}

#[pg_test]
fn a_search_that_cannot_run_is_refused_before_the_query_is_paid_for() {
    use_mock("search_refused", "dim=16/");
    create_papers("bigint", "(16)");
    embedded_papers(3);
    let requests = || stats("search_refused")["requests"].as_i64().unwrap();
    let before = requests();
    for (sql, state) in [
        (r#"SELECT * FROM doctrove_embed.search('q', 5, NULL, '{"no_such_column": 1}')"#, "42703"),
        (r#"SELECT * FROM doctrove_embed.search('q', 5, NULL, NULL, ARRAY['no_such_column'])"#, "42703"),
        (r#"SELECT * FROM doctrove_embed.search('q', 5, NULL, '{"doctrove_title": {"~": "x"}}')"#, "22023"),
        (r#"SELECT * FROM doctrove_embed.search('q', 5, NULL, '["doctrove_title"]')"#, "22023"),
        ("SELECT * FROM doctrove_embed.search('q', 50001, NULL)", "22023"),
        ("SELECT * FROM doctrove_embed.search('q', 5, 1.5)", "22023"),
        ("SELECT * FROM doctrove_embed.search(NULL, 5, NULL)", "22004"),
        ("SELECT * FROM doctrove_embed.search('q', 5, NULL, NULL, NULL, 'no_such_job')", "42704"),
    ] {
        assert_eq!(sqlstate_of(sql), state, "{sql}");
    }
    assert_eq!(requests(), before, "a refused search sent a request");
    // A value the column's type does not take is the type's own error.
    assert_eq!(
        sqlstate_of(r#"SELECT * FROM doctrove_embed.search('q', 5, NULL, '{"doctrove_paper_id": "twelve"}')"#),
        "22P02"
    );
}

#[pg_test]
fn a_repeated_query_is_answered_from_the_cache_without_a_request() {
    use_mock("search_cache", "dim=16/");
    create_papers("bigint", "(16)");
    let papers = embedded_papers(10);
    let requests = || stats("search_cache")["requests"].as_i64().unwrap();
    let cache = || {
        Spi::get_two::<i64, i64>("SELECT query_cache_hits, query_cache_misses FROM doctrove_embed.status")
            .map(|(h, m)| (h.unwrap(), m.unwrap()))
            .unwrap()
    };
    let text = format!("cached query {}", std::process::id());
    let (hits, misses) = cache();
    let before = requests();
    let first = searched(&format!("doctrove_embed.search('{text}', 3)"));
    let again = searched(&format!("doctrove_embed.search('{text}', 3, NULL)"));
    let query = vector_for(&text, 16);
    let expected: Vec<String> = exact_order(&query, &papers).into_iter().take(3).collect();
    assert_eq!((first, again), (expected.clone(), expected));
    assert_eq!(requests(), before + 1, "the second search paid again");
    assert_eq!(cache(), (hits + 1, misses + 1));
    // Another text, or the cache off, is a request.
    searched(&format!("doctrove_embed.search('{text} again', 3)"));
    set("doctrove_embed.query_cache_ttl_s", "0");
    searched(&format!("doctrove_embed.search('{text}', 3)"));
    assert_eq!(requests(), before + 3);
}

#[pg_test]
fn hybrid_search_fuses_the_vector_and_the_word_rankings_by_reciprocal_rank() {
    use_mock("search_hybrid", "dim=16/");
    create_papers("bigint", "(16)");
    let papers = embedded_papers(40);
    // A name only one paper's title holds (its text was embedded as 'Paper 7').
    Spi::run("UPDATE doctrove_papers SET doctrove_title = 'XYZZY transformers for graphs' WHERE doctrove_paper_id = 7").unwrap();
    let name = Spi::get_one::<String>("SELECT doctrove_embed.create_text_index()").unwrap().unwrap();
    assert_eq!(name, "public.doctrove_papers_text_idx");
    assert!(Spi::get_one::<String>("SELECT doctrove_embed.text_index_command()")
        .unwrap()
        .unwrap()
        .starts_with("CREATE INDEX CONCURRENTLY IF NOT EXISTS \"doctrove_papers_text_idx\""));
    let text = "XYZZY transformers";
    let vector_order = exact_order(&vector_for(text, 16), &papers);
    let rank_of = |id: &str| vector_order.iter().position(|x| x == id).unwrap() as f64 + 1.0;
    let rows: Vec<(String, f64, Option<i64>, Option<i64>)> = Spi::connect(|client| {
        client
            .select(
                &format!("SELECT paper_id, score, vector_rank, text_rank FROM doctrove_embed.hybrid_search('{text}', 5)"),
                None,
                &[],
            )
            .unwrap()
            .map(|r| (r.get(1).unwrap().unwrap(), r.get(2).unwrap().unwrap(), r.get(3).unwrap(), r.get(4).unwrap()))
            .collect()
    });
    // The paper that holds the words comes first; every score is the fusion of the exact ranks.
    assert_eq!(rows[0].0, "7");
    assert_eq!(rows[0].3, Some(1));
    for (id, score, vector_rank, text_rank) in &rows {
        assert_eq!(*vector_rank, Some(rank_of(id) as i64), "{id}");
        let expected = 1.0 / (60.0 + rank_of(id)) + text_rank.map_or(0.0, |r| 1.0 / (60.0 + r as f64));
        assert!((score - expected).abs() < 1e-12, "{id}: {score} vs {expected}");
    }
    // Without the words, the vector ranking alone; without the vectors, the words alone.
    assert_eq!(
        searched(&format!("doctrove_embed.hybrid_search('{text}', 5, text_weight => 0)")),
        vector_order.iter().take(5).cloned().collect::<Vec<_>>()
    );
    assert_eq!(
        searched(&format!("doctrove_embed.hybrid_search('{text}', 5, vector_weight => 0)"))[0],
        "7"
    );
    // A filter applies to both rankings.
    let filtered = searched(&format!(r#"doctrove_embed.hybrid_search('{text}', 5, '{{"doctrove_paper_id": {{"<>": 7}}}}')"#));
    assert!(!filtered.contains(&"7".to_string()), "{filtered:?}");
    assert_eq!(sqlstate_of("SELECT * FROM doctrove_embed.hybrid_search('x', 5, vector_weight => -1)"), "22023");
    assert_eq!(sqlstate_of("SELECT * FROM doctrove_embed.hybrid_search('x', 1001)"), "22023");
}

#[pg_test]
fn the_query_takes_the_stored_texts_form_before_it_is_embedded() {
    use_mock("search_format", "dim=16/");
    create_papers("bigint", "(16)");
    let papers = embedded_papers(20);
    set("doctrove_embed.query_format", "Title: {query}");
    let expected: Vec<String> = exact_order(&vector_for("Title: graph neural networks", 16), &papers)
        .into_iter()
        .take(5)
        .collect();
    assert_eq!(searched("doctrove_embed.search('graph neural networks', 5)"), expected);
    // The hybrid search embeds the formatted text too (and matches the words as given).
    assert_eq!(
        searched("doctrove_embed.hybrid_search('graph neural networks', 5, text_weight => 0)"),
        expected
    );
    set("doctrove_embed.query_format", "Title: {title}");
    assert_eq!(sqlstate_of("SELECT * FROM doctrove_embed.search('x', 5)"), "22023");
}

#[pg_test]
fn a_job_s_query_format_comes_before_the_setting() {
    use_mock("search_job_format", "dim=16/");
    create_papers("bigint", "(16)");
    let papers = embedded_papers(20);
    let order_of = |text: &str| -> Vec<String> { exact_order(&vector_for(text, 16), &papers).into_iter().take(5).collect() };
    Spi::run(
        "SELECT doctrove_embed.create_job('prefixed', 'doctrove_papers', 'doctrove_embedding', 'm', \
         query_format => 'query: {query}')",
    )
    .unwrap();
    let by_job = "doctrove_embed.search('graph neural networks', 5, NULL, job => 'prefixed')";
    assert_eq!(searched(by_job), order_of("query: graph neural networks"));
    assert_eq!(
        searched("doctrove_embed.hybrid_search('graph neural networks', 5, text_weight => 0, job => 'prefixed')"),
        order_of("query: graph neural networks")
    );
    // The settings' job keeps the setting.
    assert_eq!(searched("doctrove_embed.search('graph neural networks', 5)"), order_of("graph neural networks"));
    // '' gives the job the setting back.
    Spi::run("SELECT doctrove_embed.alter_job('prefixed', query_format => '')").unwrap();
    set("doctrove_embed.query_format", "Title: {query}");
    assert_eq!(searched(by_job), order_of("Title: graph neural networks"));
    // A format that is not one is refused when it is recorded, before anything is paid.
    assert_eq!(sqlstate_of("SELECT doctrove_embed.alter_job('prefixed', query_format => '{title}')"), "22023");
    assert_eq!(
        sqlstate_of(
            "SELECT doctrove_embed.create_job('other', 'doctrove_papers', 'spare', 'm', query_format => 'no field')"
        ),
        "22023"
    );
}
