//! `#[pg_test]`s: the SQL functions against a real PostgreSQL with pgvector, talking to the
//! project's mock server (started by the test runner, see `crate::pg_test`). Each test runs in
//! its own transaction, rolled back at the end, and counts its requests under its own scope.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use doctrove_mock::{fetch_stats, vector_for};
    use pgrx::prelude::*;
    use serde_json::Value;

    /// `http://127.0.0.1:PORT` of the mock, from the cluster's configured base URL.
    fn mock_root() -> String {
        let base = Spi::get_one::<String>("SELECT current_setting('doctrove_embed.api_base_url')")
            .unwrap()
            .unwrap();
        base.trim_end_matches("/v1").to_string()
    }

    /// Points this transaction at the mock, counting under `scope`, with extra switches.
    fn use_mock(scope: &str, switches: &str) {
        let url = format!("{}/s={scope}/{switches}v1", mock_root());
        set("doctrove_embed.api_base_url", &url);
    }

    fn set(name: &str, value: &str) {
        Spi::run_with_args("SELECT set_config($1, $2, true)", &[name.into(), value.into()]).unwrap();
    }

    fn stats(scope: &str) -> Value {
        fetch_stats(&mock_root(), scope).unwrap()
    }

    fn create_papers(id_type: &str, dims: &str) {
        Spi::run(&format!(
            "CREATE TABLE doctrove_papers (doctrove_paper_id {id_type} PRIMARY KEY, doctrove_title text, \
             doctrove_abstract text, doctrove_embedding vector{dims})"
        ))
        .unwrap();
    }

    fn embed(batch: i32) -> (i32, i32) {
        Spi::get_two_with_args::<i32, i32>(
            "SELECT successful_embeddings, failed_embeddings FROM embed_pending($1)",
            &[batch.into()],
        )
        .map(|(a, b)| (a.unwrap(), b.unwrap()))
        .unwrap()
    }

    fn count() -> i64 {
        Spi::get_one::<i64>("SELECT get_papers_needing_embeddings_count()")
            .unwrap()
            .unwrap()
    }

    fn stored_vector(id_sql: &str) -> Option<Vec<f32>> {
        Spi::get_one::<Vec<f32>>(&format!(
            "SELECT doctrove_embedding::real[] FROM doctrove_papers WHERE doctrove_paper_id = {id_sql}"
        ))
        .unwrap()
    }

    fn insert(id: i64, title: Option<&str>, abstract_text: Option<&str>) {
        Spi::run_with_args(
            "INSERT INTO doctrove_papers (doctrove_paper_id, doctrove_title, doctrove_abstract) VALUES ($1, $2, $3)",
            &[id.into(), title.into(), abstract_text.into()],
        )
        .unwrap();
    }

    #[pg_test]
    fn each_pending_paper_gets_the_mock_vector_of_its_text() {
        use_mock("happy", "");
        create_papers("bigint", "(1536)");
        insert(1, Some("Attention Is All You Need"), Some("We propose the Transformer."));
        insert(2, Some("No abstract"), None);
        insert(3, Some("Blank abstract"), Some("   "));
        insert(4, Some("  Padded title "), Some(" padded abstract \n"));
        assert_eq!(count(), 4);
        assert_eq!(embed(250), (4, 0));
        let expected = [
            (1, "Title: Attention Is All You Need Abstract: We propose the Transformer."),
            (2, "Title: No abstract"),
            (3, "Title: Blank abstract"),
            (4, "Title:   Padded title  Abstract:  padded abstract"),
        ];
        for (id, text) in expected {
            assert_eq!(stored_vector(&id.to_string()), Some(vector_for(text, 1536)), "paper {id}");
        }
        assert_eq!(count(), 0);
        let s = stats("happy");
        assert_eq!(s["requests"], 1);
        assert_eq!(s["inputs"], 4);
        assert_eq!(s["last_model"], "text-embedding-3-small");
        assert_eq!(s["last_encoding_format"], "base64");
        assert_eq!(s["last_dimensions"], Value::Null);
        assert_eq!(s["last_auth"], "Authorization: Bearer sk-test-0123456789");
    }

    #[pg_test]
    fn papers_without_a_title_are_neither_sent_nor_counted() {
        use_mock("untitled", "dim=8/");
        create_papers("bigint", "(8)");
        insert(1, None, Some("orphan abstract"));
        insert(2, Some(""), Some("empty title"));
        insert(3, Some("Real"), None);
        assert_eq!(count(), 1);
        assert_eq!(embed(250), (1, 0));
        assert_eq!(stored_vector("1"), None);
        assert_eq!(stored_vector("2"), None);
        assert_eq!(stored_vector("3"), Some(vector_for("Title: Real", 8)));
        assert_eq!(stats("untitled")["inputs"], 1);
    }

    #[pg_test]
    fn nothing_pending_returns_zeros_without_calling_the_api() {
        use_mock("idle", "dim=8/");
        create_papers("bigint", "(8)");
        let row = Spi::get_three::<i32, f64, f64>("SELECT successful_embeddings, api_ms, db_ms FROM embed_pending(250)").unwrap();
        assert_eq!(row, (Some(0), Some(0.0), Some(0.0)));
        assert_eq!(stats("idle")["requests"], 0);
    }

    #[pg_test]
    fn the_batch_size_limits_one_call() {
        use_mock("limit", "dim=4/");
        create_papers("bigint", "(4)");
        for id in 0..10 {
            insert(id, Some(&format!("paper {id}")), None);
        }
        assert_eq!(embed(3), (3, 0));
        assert_eq!(count(), 7);
        assert_eq!(stats("limit")["inputs"], 3);
    }

    #[pg_test]
    fn uuid_ids_work() {
        use_mock("uuid", "dim=8/");
        create_papers("uuid", "(8)");
        Spi::run("INSERT INTO doctrove_papers VALUES ('8c4c2d2e-0d4f-4d55-b4a5-2a4b7e0f1a11', 'U', 'uuid paper', NULL)").unwrap();
        assert_eq!(embed(10), (1, 0));
        assert_eq!(
            stored_vector("'8c4c2d2e-0d4f-4d55-b4a5-2a4b7e0f1a11'"),
            Some(vector_for("Title: U Abstract: uuid paper", 8))
        );
    }

    #[pg_test]
    fn text_ids_work() {
        use_mock("textid", "dim=8/");
        create_papers("text", "(8)");
        Spi::run("INSERT INTO doctrove_papers VALUES ('arXiv:2401.00001', 'T', NULL, NULL)").unwrap();
        assert_eq!(embed(10), (1, 0));
        assert_eq!(stored_vector("'arXiv:2401.00001'"), Some(vector_for("Title: T", 8)));
    }

    #[pg_test]
    fn quoted_identifiers_work() {
        use_mock("quoted", "dim=8/");
        Spi::run(
            "CREATE SCHEMA \"Lab Data\"; CREATE TABLE \"Lab Data\".\"Papers \"\"2024\"\"\" (\"Paper Id\" int PRIMARY KEY, \
             \"Ti\"\"tle\" text, \"Abstract Text\" varchar, \"Vec\" vector(8)); \
             INSERT INTO \"Lab Data\".\"Papers \"\"2024\"\"\" VALUES (7, 'Q', 'quoted', NULL)",
        )
        .unwrap();
        set("doctrove_embed.table", "\"Lab Data\".\"Papers \"\"2024\"\"\"");
        set("doctrove_embed.id_column", "Paper Id");
        set("doctrove_embed.title_column", "Ti\"tle");
        set("doctrove_embed.abstract_column", "Abstract Text");
        set("doctrove_embed.embedding_column", "Vec");
        assert_eq!(count(), 1);
        assert_eq!(embed(10), (1, 0));
        let stored = Spi::get_one::<Vec<f32>>("SELECT \"Vec\"::real[] FROM \"Lab Data\".\"Papers \"\"2024\"\"\"").unwrap();
        assert_eq!(stored, Some(vector_for("Title: Q Abstract: quoted", 8)));
    }

    #[pg_test]
    fn model_version_and_updated_at_are_set_when_the_table_has_them() {
        use_mock("version", "dim=8/");
        create_papers("bigint", "(8)");
        Spi::run(
            "ALTER TABLE doctrove_papers ADD COLUMN embedding_model_version varchar(64), \
             ADD COLUMN updated_at timestamptz DEFAULT '2000-01-01'",
        )
        .unwrap();
        insert(1, Some("V"), None);
        set("doctrove_embed.model", "text-embedding-3-small");
        assert_eq!(embed(10), (1, 0));
        let (version, fresh) = Spi::get_two::<String, bool>(
            "SELECT embedding_model_version, updated_at = now() FROM doctrove_papers WHERE doctrove_paper_id = 1",
        )
        .unwrap();
        assert_eq!(version.as_deref(), Some("text-embedding-3-small"));
        assert_eq!(fresh, Some(true));
    }

    #[pg_test(error = "column \"no_such_column\" of table public.doctrove_papers does not exist")]
    fn a_misnamed_optional_column_is_an_error() {
        create_papers("bigint", "(8)");
        set("doctrove_embed.updated_at_column", "no_such_column");
        embed(10);
    }

    #[pg_test]
    fn the_tables_own_triggers_fire_on_each_write() {
        use_mock("triggers", "dim=8/");
        create_papers("bigint", "(8)");
        Spi::run(
            "CREATE TABLE projection_queue (paper_id bigint); \
             CREATE FUNCTION queue_projection() RETURNS trigger LANGUAGE plpgsql AS \
             $$BEGIN INSERT INTO public.projection_queue VALUES (NEW.doctrove_paper_id); RETURN NEW; END$$; \
             CREATE TRIGGER queue_projection AFTER UPDATE OF doctrove_embedding ON doctrove_papers \
             FOR EACH ROW EXECUTE FUNCTION queue_projection()",
        )
        .unwrap();
        for id in 1..=3 {
            insert(id, Some(&format!("t{id}")), None);
        }
        assert_eq!(embed(10), (3, 0));
        let queued = Spi::get_one::<String>("SELECT string_agg(paper_id::text, ',' ORDER BY paper_id) FROM projection_queue");
        assert_eq!(queued.unwrap().as_deref(), Some("1,2,3"));
    }

    #[pg_test]
    fn more_than_2048_papers_go_in_several_requests() {
        use_mock("chunks", "dim=4/");
        create_papers("bigint", "(4)");
        Spi::run("INSERT INTO doctrove_papers SELECT g, 'paper ' || g, NULL, NULL FROM generate_series(1, 2100) g").unwrap();
        assert_eq!(embed(2100), (2100, 0));
        let s = stats("chunks");
        assert_eq!(s["requests"], 2);
        assert_eq!(s["max_inputs_per_request"], 2048);
        assert_eq!(s["duplicate_inputs"], 0);
        assert_eq!(stored_vector("2099"), Some(vector_for("Title: paper 2099", 4)));
    }

    #[pg_test]
    fn dimensions_are_sent_when_set() {
        use_mock("dims", "");
        create_papers("bigint", "(16)");
        insert(1, Some("D"), None);
        set("doctrove_embed.dimensions", "16");
        assert_eq!(embed(10), (1, 0));
        assert_eq!(stats("dims")["last_dimensions"], 16);
        assert_eq!(stored_vector("1"), Some(vector_for("Title: D", 16)));
    }

    #[pg_test]
    fn a_plain_vector_column_takes_the_length_the_api_answers() {
        use_mock("plain", "dim=5/");
        create_papers("bigint", "");
        insert(1, Some("P"), None);
        assert_eq!(embed(10), (1, 0));
        assert_eq!(stored_vector("1"), Some(vector_for("Title: P", 5)));
    }

    #[pg_test]
    fn count_and_fetch_use_the_partial_index() {
        use_mock("index", "dim=8/");
        create_papers("bigint", "(8)");
        Spi::run("INSERT INTO doctrove_papers SELECT g, 'p' || g, NULL, NULL FROM generate_series(1, 500) g").unwrap();
        let name = Spi::get_one::<String>("SELECT doctrove_embed.create_pending_index()")
            .unwrap()
            .unwrap();
        assert_eq!(name, "public.doctrove_papers_pending_embedding_idx");
        let scans = || {
            Spi::get_one::<i64>("SELECT pg_stat_get_xact_numscans('doctrove_papers_pending_embedding_idx'::regclass)")
                .unwrap()
                .unwrap()
        };
        let before = scans();
        assert_eq!(count(), 500);
        let after_count = scans();
        assert!(after_count > before, "the count did not scan the index");
        assert_eq!(embed(100), (100, 0));
        assert!(scans() > after_count, "the fetch did not scan the index");
        assert_eq!(count(), 400);
    }

    #[pg_test]
    fn an_existing_partial_index_on_the_embedding_is_found() {
        create_papers("bigint", "(8)");
        Spi::run("CREATE INDEX my_pending ON doctrove_papers (doctrove_paper_id) WHERE doctrove_embedding IS NULL").unwrap();
        let name = Spi::get_one::<String>("SELECT doctrove_embed.create_pending_index()").unwrap();
        assert_eq!(name.as_deref(), Some("public.my_pending"));
    }

    #[pg_test]
    fn the_index_command_is_concurrent() {
        create_papers("bigint", "(8)");
        let command = Spi::get_one::<String>("SELECT doctrove_embed.pending_index_command()")
            .unwrap()
            .unwrap();
        assert!(command.starts_with("CREATE INDEX CONCURRENTLY IF NOT EXISTS \"doctrove_papers_pending_embedding_idx\""));
    }

    #[pg_test]
    fn input_text_matches_the_service_format() {
        let text = Spi::get_one::<String>("SELECT doctrove_embed.input_text('A', ' ')").unwrap();
        assert_eq!(text.as_deref(), Some("Title: A"));
    }

    #[pg_test(error = "the embeddings API refused the API key (HTTP 401)")]
    fn a_refused_key_is_an_error() {
        use_mock("badkey", "key=the-right-one/dim=8/");
        create_papers("bigint", "(8)");
        insert(1, Some("K"), None);
        embed(10);
    }

    #[pg_test(error = "batch must be at least 1, not 0")]
    fn a_batch_below_one_is_refused() {
        embed(0);
    }

    /// Cosine distance, as pgvector computes it.
    fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        1.0 - dot / (norm(a) * norm(b))
    }

    /// Ids of `candidates` ordered by exact cosine distance to `to`.
    fn exact_order(to: &[f32], candidates: &[(i64, Vec<f32>)]) -> Vec<String> {
        let mut sorted: Vec<(f64, i64)> = candidates.iter().map(|(id, v)| (cosine_distance(to, v), *id)).collect();
        sorted.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        sorted.into_iter().map(|(_, id)| id.to_string()).collect()
    }

    fn embedded_papers(n: i64) -> Vec<(i64, Vec<f32>)> {
        for id in 1..=n {
            insert(id, Some(&format!("Paper {id}")), Some(&format!("About topic {}", id % 7)));
        }
        embed(1000);
        (1..=n).map(|id| (id, stored_vector(&id.to_string()).unwrap())).collect()
    }

    fn ids(query: &str) -> Vec<String> {
        Spi::connect(|client| {
            client
                .select(query, None, &[])
                .unwrap()
                .map(|row| row.get::<String>(1).unwrap().unwrap())
                .collect()
        })
    }

    #[pg_test]
    fn similar_papers_are_the_exact_nearest_neighbours_with_the_hnsw_index() {
        use_mock("similar", "dim=16/");
        create_papers("bigint", "(16)");
        let papers = embedded_papers(60);
        let name = Spi::get_one::<String>("SELECT doctrove_embed.create_hnsw_index()")
            .unwrap()
            .unwrap();
        assert_eq!(name, "public.doctrove_papers_embedding_hnsw_idx");
        let status = Spi::get_one::<String>("SELECT hnsw_index FROM doctrove_embed.status").unwrap();
        assert_eq!(status.as_deref(), Some("public.doctrove_papers_embedding_hnsw_idx"));
        let others: Vec<(i64, Vec<f32>)> = papers.iter().filter(|(id, _)| *id != 5).cloned().collect();
        let expected: Vec<String> = exact_order(&papers[4].1, &others).into_iter().take(5).collect();
        assert_eq!(ids("SELECT paper_id FROM doctrove_embed.similar_papers('5', 5)"), expected);
    }

    #[pg_test]
    fn search_embeds_the_query_and_returns_the_nearest_papers() {
        use_mock("search", "dim=16/");
        create_papers("bigint", "(16)");
        let papers = embedded_papers(40);
        let query = vector_for("graph neural networks", 16);
        let expected: Vec<String> = exact_order(&query, &papers).into_iter().take(3).collect();
        assert_eq!(
            ids("SELECT paper_id FROM doctrove_embed.search('graph neural networks', 3)"),
            expected
        );
        assert_eq!(stats("search")["requests"], 2, "one batch and one query");
    }

    #[pg_test(error = "paper 9 has no embedding yet")]
    fn similar_papers_of_a_paper_without_embedding_is_an_error() {
        create_papers("bigint", "(16)");
        insert(9, Some("Not yet"), None);
        Spi::run("SELECT * FROM doctrove_embed.similar_papers('9')").unwrap();
    }

    #[pg_test]
    fn the_key_can_come_from_a_file() {
        use_mock("keyfile", "key=sk-from-file-42/dim=8/");
        create_papers("bigint", "(8)");
        insert(1, Some("F"), None);
        let path = format!("/tmp/doctrove_embed_key_{}", std::process::id());
        std::fs::write(&path, "sk-from-file-42\n").unwrap();
        set("doctrove_embed.api_key", "");
        set("doctrove_embed.api_key_file", &path);
        let done = embed(10);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(done, (1, 0));
        assert_eq!(stats("keyfile")["last_auth"], "Authorization: Bearer sk-from-file-42");
    }

    #[pg_test(error = "doctrove_embed.api_key_file \"/tmp/doctrove_embed_open_key\" is readable by other users (mode 0644)")]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        create_papers("bigint", "(8)");
        insert(1, Some("F"), None);
        let path = "/tmp/doctrove_embed_open_key";
        std::fs::write(path, "sk-open\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        set("doctrove_embed.api_key", "");
        set("doctrove_embed.api_key_file", path);
        embed(10);
    }

    #[pg_test]
    fn a_table_name_without_a_schema_means_public_whatever_the_search_path() {
        use_mock("decoy", "dim=8/");
        create_papers("bigint", "(8)");
        insert(1, Some("Real"), None);
        Spi::run(
            "CREATE SCHEMA decoy; CREATE TABLE decoy.doctrove_papers (LIKE public.doctrove_papers INCLUDING ALL); \
             INSERT INTO decoy.doctrove_papers VALUES (1, 'Decoy', NULL, NULL), (2, 'Decoy', NULL, NULL)",
        )
        .unwrap();
        set("search_path", "decoy, public");
        assert_eq!(count(), 1);
        assert_eq!(embed(10), (1, 0));
        let decoy = Spi::get_one::<i64>("SELECT count(doctrove_embedding) FROM decoy.doctrove_papers").unwrap();
        assert_eq!(decoy, Some(0));
        set("doctrove_embed.table", "decoy.doctrove_papers");
        assert_eq!(count(), 2);
    }

    #[pg_test(error = "a batch of 200000 papers is too large to write in one statement")]
    fn a_batch_too_large_to_write_is_refused_before_any_request() {
        use_mock("toolarge", "dim=1536/");
        create_papers("bigint", "(1536)");
        insert(1, Some("Large"), None);
        embed(200_000);
    }

    #[pg_test(error = "k must be between 1 and 1000, not 5000")]
    fn too_many_neighbours_are_refused() {
        create_papers("bigint", "(8)");
        Spi::run("SELECT * FROM doctrove_embed.similar_papers('1', 5000)").unwrap();
    }

    /// Runs `submit_batches()` and returns (batches, papers, tokens, adopted, collected).
    fn submit_batches() -> (i32, i64, i64, i32, i32) {
        Spi::connect(|client| {
            let row = client
                .select("SELECT * FROM doctrove_embed.submit_batches()", None, &[])?
                .first();
            Ok::<_, pgrx::spi::Error>((
                row.get::<i32>(1)?.unwrap(),
                row.get::<i64>(2)?.unwrap(),
                row.get::<i64>(3)?.unwrap(),
                row.get::<i32>(4)?.unwrap(),
                row.get::<i32>(5)?.unwrap(),
            ))
        })
        .unwrap()
    }

    #[pg_test(error = "max_papers must not be negative")]
    fn a_negative_max_papers_is_refused() {
        create_papers("bigint", "(8)");
        Spi::run("SELECT * FROM doctrove_embed.submit_batches(-1)").unwrap();
    }

    #[pg_test]
    fn nothing_open_is_nothing_to_cancel_or_collect() {
        use_mock("batch_none", "dim=8/");
        create_papers("bigint", "(8)");
        let cancelled = Spi::get_one::<i32>("SELECT doctrove_embed.cancel_batches()").unwrap();
        assert_eq!(cancelled, Some(0));
        let collected = Spi::get_one::<String>("SELECT row(c.*)::text FROM doctrove_embed.collect_batches() c").unwrap();
        assert_eq!(collected.as_deref(), Some("(0,0,0,0,0)"));
        let mock = stats("batch_none");
        assert_eq!(mock["batches_cancelled"], 0);
        assert_eq!(mock["batch_files_uploaded"], 0);
        assert_eq!(mock["requests"], 0, "no embeddings request is sent");
        assert_eq!(mock["batch_lists"], 1, "the collection looks once for batches to adopt");
    }

    #[pg_test]
    fn submitted_papers_are_claimed_then_collected_with_the_mock_vectors() {
        use_mock("batch_submit", "dim=8/");
        create_papers("bigint", "(8)");
        for id in 1..=3 {
            insert(id, Some(&format!("Batch paper {id}")), None);
        }
        let (batches, papers, tokens, adopted, collected) = submit_batches();
        assert_eq!((batches, papers, adopted, collected), (1, 3, 0, 0));
        assert!(tokens > 0);
        let open = Spi::get_two::<i32, bool>("SELECT papers, open FROM doctrove_embed.batches").unwrap();
        assert_eq!(open, (Some(3), Some(true)));
        // The live path skips papers in an open batch: nothing is sent twice.
        assert_eq!(embed(10), (0, 0));
        let mock = stats("batch_submit");
        assert_eq!(mock["batches_created"], 1);
        assert_eq!(mock["batch_files_uploaded"], 1);
        assert_eq!(mock["inputs"], 0);
        // The mock finishes a batch at once: the collection writes each paper's vector.
        let collected = Spi::get_one::<String>("SELECT row(c.*)::text FROM doctrove_embed.collect_batches() c").unwrap();
        assert_eq!(collected.as_deref(), Some("(1,0,3,0,0)"));
        for id in 1..=3 {
            assert_eq!(
                stored_vector(&id.to_string()),
                Some(vector_for(&format!("Title: Batch paper {id}"), 8))
            );
        }
        let mock = stats("batch_submit");
        assert_eq!(
            (mock["batch_inputs"].as_u64(), mock["paid_twice"].as_u64()),
            (Some(3), Some(0))
        );
    }

    #[pg_test]
    fn the_batches_view_has_the_documented_columns() {
        let columns = Spi::get_one::<String>(
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = 'doctrove_embed.batches'::regclass AND attnum > 0",
        )
        .unwrap();
        assert_eq!(
            columns.as_deref(),
            Some(
                "batch_id,table_name,status,requests_total,requests_completed,requests_failed,papers,tokens,\
                 papers_written,papers_failed,papers_released,open,adopted,age,submitted_at,finished_at,collected_at,error,job"
            )
        );
    }

    #[pg_test(
        error = "column \"doctrove_paper_id\" of table public.doctrove_papers is of type double precision, whose text form depends on session settings"
    )]
    fn an_id_whose_text_depends_on_the_session_is_refused() {
        create_papers("double precision", "(8)");
        count();
    }

    #[pg_test]
    fn the_status_view_answers_when_the_settings_name_no_table() {
        set("doctrove_embed.table", "no_such_table");
        let row = Spi::get_two::<i64, String>("SELECT pending, hnsw_index FROM doctrove_embed.status").unwrap();
        assert_eq!(row, (None, None));
    }

    #[pg_test]
    fn an_endpoint_without_a_batch_api_says_so() {
        use_mock("batch_absent", "dim=8/no_batch_api=1/");
        create_papers("bigint", "(8)");
        insert(1, Some("Live only"), None);
        Spi::run(
            "CREATE TABLE caught (state text, message text, hint text); \
             DO $$DECLARE h text; BEGIN PERFORM * FROM doctrove_embed.submit_batches(); \
             EXCEPTION WHEN OTHERS THEN GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT; \
             INSERT INTO caught VALUES (SQLSTATE, SQLERRM, h); END$$",
        )
        .unwrap();
        let (state, message) = Spi::get_two::<String, String>("SELECT state, message FROM caught").unwrap();
        assert_eq!(state.as_deref(), Some("0A000"));
        let message = message.unwrap();
        assert!(
            message.starts_with("the embeddings API at http://127.0.0.1:") && message.ends_with("has no Batch API"),
            "{message}"
        );
        let hint = Spi::get_one::<String>("SELECT hint FROM caught").unwrap().unwrap();
        assert!(hint.contains("embed_pending()"), "{hint}");
        // The live path still embeds the paper.
        assert_eq!(embed(10), (1, 0));
    }

    #[pg_test]
    fn a_batch_s_vectors_are_labelled_with_the_model_that_made_them() {
        use_mock("batch_model", "dim=8/");
        Spi::run(
            "CREATE TABLE doctrove_papers (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text, \
             doctrove_abstract text, doctrove_embedding vector(8), embedding_model_version text)",
        )
        .unwrap();
        insert(1, Some("Model label"), None);
        set("doctrove_embed.model", "model-a");
        assert_eq!(submit_batches().0, 1);
        // The setting changes while the batch is open: its vectors are still model-a's.
        set("doctrove_embed.model", "model-b");
        let collected = Spi::get_one::<String>("SELECT row(c.*)::text FROM doctrove_embed.collect_batches() c").unwrap();
        assert_eq!(collected.as_deref(), Some("(1,0,1,0,0)"));
        let label = Spi::get_one::<String>("SELECT embedding_model_version FROM doctrove_papers").unwrap();
        assert_eq!(label.as_deref(), Some("model-a"));
        assert_eq!(stored_vector("1"), Some(vector_for("Title: Model label", 8)));
    }

    #[pg_test]
    fn a_commit_wakes_one_idle_worker_or_else_every_busy_one_of_its_database() {
        use crate::pg::shared_state::{slots_to_wake, Phase, WorkerSlot};
        let running = |database: u32, phase: Phase| {
            let mut slot = WorkerSlot::default();
            (slot.pid, slot.latch, slot.database, slot.phase) = (1000 + database as i32, 0x1000, database, phase);
            slot
        };
        let mut slots = [
            running(7, Phase::Batches),
            running(7, Phase::Writing),
            running(8, Phase::Idle),
            running(7, Phase::Idle),
            WorkerSlot::default(),
            running(7, Phase::Disabled),
        ];
        // Database 7's idle worker, marked as fetching so the next commit does not count on it.
        assert_eq!(slots_to_wake(&mut slots, 7), Some(vec![3]));
        assert_eq!(slots[3].phase, Phase::Fetching);
        // None idle now: each of database 7's enabled workers looks once more after what it is
        // doing.
        assert_eq!(slots_to_wake(&mut slots, 7), Some(vec![0, 1, 3]));
        assert_eq!(slots[2].phase, Phase::Idle, "another database's worker is not touched");
        // No worker serves database 9: the launcher is asked instead.
        assert_eq!(slots_to_wake(&mut slots, 9), None);
        // A worker the launcher is starting (no process yet) serves its database, and wakes later.
        slots[4].database = 9;
        assert_eq!(slots_to_wake(&mut slots, 9), Some(vec![]));
    }

    include!("job_tests.rs");
    include!("search_tests.rs");
}
