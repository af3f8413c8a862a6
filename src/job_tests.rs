// `#[pg_test]`s of embedding jobs, included in `tests` (pgrx runs the tests of that schema):
// a job fills its own column with its own model, runs as the table's owner for the roles it is
// granted to, is refused before any request to the others, and keeps its failures apart.

fn create_two_column_papers() {
    Spi::run(
        "CREATE TABLE doctrove_papers (doctrove_paper_id bigint PRIMARY KEY, doctrove_title text, \
         doctrove_abstract text, doctrove_embedding vector(8), local_embedding vector(8), local_model text)",
    )
    .unwrap();
    for (id, title) in [(1, "Alpha"), (2, "Beta"), (3, "Gamma")] {
        insert(id, Some(title), Some(&format!("about {title}")));
    }
}

fn embed_job(batch: i32, job: &str) -> (i32, i32) {
    Spi::get_two_with_args::<i32, i32>(
        "SELECT successful_embeddings, failed_embeddings FROM embed_pending($1, $2)",
        &[batch.into(), job.into()],
    )
    .map(|(a, b)| (a.unwrap(), b.unwrap()))
    .unwrap()
}

fn local_vector(id: i64) -> Option<Vec<f32>> {
    Spi::get_one_with_args::<Vec<f32>>(
        "SELECT local_embedding::real[] FROM doctrove_papers WHERE doctrove_paper_id = $1",
        &[id.into()],
    )
    .unwrap()
}

fn create_local_job() {
    Spi::run(
        "SELECT doctrove_embed.create_job('local', 'doctrove_papers', 'local_embedding', 'all-minilm-l6-v2', \
         model_version_column => 'local_model')",
    )
    .unwrap();
}

/// The SQLSTATE of the error `sql` raises, caught in a subtransaction (`none` without one).
fn sqlstate_of(sql: &str) -> String {
    Spi::run_with_args("SELECT set_config('doctrove_test.sql', $1, true)", &[sql.into()]).unwrap();
    Spi::run(
        "DO $$ BEGIN EXECUTE current_setting('doctrove_test.sql'); \
         PERFORM set_config('doctrove_test.state', 'none', true); \
         EXCEPTION WHEN OTHERS THEN PERFORM set_config('doctrove_test.state', SQLSTATE, true); END $$",
    )
    .unwrap();
    Spi::get_one::<String>("SELECT current_setting('doctrove_test.state')").unwrap().unwrap()
}

#[pg_test]
fn a_job_fills_its_own_column_with_its_own_model() {
    use_mock("job_column", "dim=8/");
    create_two_column_papers();
    create_local_job();
    assert_eq!(
        Spi::get_one::<i64>("SELECT get_papers_needing_embeddings_count('local')").unwrap(),
        Some(3)
    );
    assert_eq!(embed_job(250, "local"), (3, 0));
    for (id, title) in [(1, "Alpha"), (2, "Beta"), (3, "Gamma")] {
        assert_eq!(local_vector(id), Some(vector_for(&format!("Title: {title} Abstract: about {title}"), 8)));
    }
    let s = stats("job_column");
    assert_eq!((s["requests"].as_i64(), s["inputs"].as_i64()), (Some(1), Some(3)));
    assert_eq!(s["last_model"], "all-minilm-l6-v2");
    // The model that made each vector is recorded beside it.
    assert_eq!(
        Spi::get_one::<i64>("SELECT count(*) FROM doctrove_papers WHERE local_model = 'all-minilm-l6-v2'").unwrap(),
        Some(3)
    );
    // The job default (the settings) is untouched and still pending, with its own model.
    assert_eq!(stored_vector("1"), None);
    assert_eq!(count(), 3);
    assert_eq!(
        Spi::get_one::<i64>("SELECT get_papers_needing_embeddings_count('local')").unwrap(),
        Some(0)
    );
    assert_eq!(embed(250), (3, 0));
    assert_eq!(stats("job_column")["last_model"], "text-embedding-3-small");
    assert_eq!(stored_vector("2"), Some(vector_for("Title: Beta Abstract: about Beta", 8)));
}

#[pg_test]
fn a_jobs_text_format_makes_the_text_it_sends_and_a_change_applies_to_the_next_batch() {
    use_mock("job_format", "dim=8/");
    create_two_column_papers();
    insert(4, Some("Delta"), None);
    Spi::run(
        "SELECT doctrove_embed.create_job('local', 'doctrove_papers', 'local_embedding', 'e5-small', \
         text_format => 'passage: {title}[. {abstract}]')",
    )
    .unwrap();
    assert_eq!(embed_job(2, "local"), (2, 0));
    for (id, title) in [(1, "Alpha"), (2, "Beta")] {
        assert_eq!(local_vector(id), Some(vector_for(&format!("passage: {title}. about {title}"), 8)));
    }
    // The same text from SQL, for checking a format before using it.
    assert_eq!(
        Spi::get_one::<String>("SELECT doctrove_embed.input_text('Alpha', 'about Alpha', 'passage: {title}[. {abstract}]')")
            .unwrap()
            .as_deref(),
        Some("passage: Alpha. about Alpha")
    );
    // A changed format sends the new text from the next batch on; '' is the default again.
    Spi::run("SELECT doctrove_embed.alter_job('local', text_format => 'query: {title}')").unwrap();
    assert_eq!(embed_job(1, "local"), (1, 0));
    assert_eq!(local_vector(3), Some(vector_for("query: Gamma", 8)));
    Spi::run("SELECT doctrove_embed.alter_job('local', text_format => '')").unwrap();
    assert_eq!(embed_job(10, "local"), (1, 0));
    assert_eq!(local_vector(4), Some(vector_for("Title: Delta", 8)));
    let s = stats("job_format");
    assert_eq!((s["inputs"].as_i64(), s["duplicate_inputs"].as_i64()), (Some(4), Some(0)));
    // A format that is not one is refused before it is recorded, with the reason.
    assert_eq!(
        sqlstate_of("SELECT doctrove_embed.alter_job('local', text_format => 'passage: {body}')"),
        "22023"
    );
    assert_eq!(
        Spi::get_one::<String>("SELECT text_format FROM doctrove_embed.job_definitions WHERE name = 'local'").unwrap(),
        None
    );
}

#[pg_test]
fn a_job_runs_as_the_table_owner_with_a_fixed_search_path_for_a_granted_role() {
    use_mock("job_owner", "dim=8/");
    Spi::run(
        "CREATE ROLE job_test_owner; CREATE ROLE job_test_runner; CREATE ROLE job_test_stranger; \
         GRANT CREATE ON SCHEMA public TO job_test_owner; \
         GRANT EXECUTE ON FUNCTION doctrove_embed.create_job(text, text, text, text, text, text, text, integer, text, text, integer, integer, boolean, boolean, text[], text, text) TO job_test_owner, job_test_stranger;",
    )
    .unwrap();
    create_two_column_papers();
    Spi::run(
        "CREATE TABLE write_log (who text, path text); \
         CREATE FUNCTION log_writer() RETURNS trigger LANGUAGE plpgsql AS \
         $$BEGIN INSERT INTO public.write_log VALUES (current_user, current_setting('search_path')); RETURN NEW; END$$; \
         CREATE TRIGGER log_writer AFTER UPDATE OF local_embedding ON doctrove_papers \
         FOR EACH ROW EXECUTE FUNCTION log_writer(); \
         ALTER TABLE doctrove_papers OWNER TO job_test_owner; ALTER TABLE write_log OWNER TO job_test_owner; \
         ALTER FUNCTION log_writer() OWNER TO job_test_owner;",
    )
    .unwrap();
    Spi::run("SET LOCAL ROLE job_test_owner").unwrap();
    create_local_job();
    Spi::run("SELECT doctrove_embed.grant_job('local', 'job_test_runner')").unwrap();
    Spi::run("RESET ROLE; SET LOCAL ROLE job_test_runner").unwrap();
    // The runner has no right on the table at all; the job acts as its owner.
    assert_eq!(embed_job(2, "local"), (2, 0));
    Spi::run("RESET ROLE").unwrap();
    let log = Spi::get_one::<String>("SELECT string_agg(DISTINCT who || ' / ' || path, ',') FROM write_log").unwrap();
    assert_eq!(log.as_deref(), Some("job_test_owner / pg_catalog, pg_temp"));
    let jobs_seen = |role: &str| {
        Spi::run(&format!("SET LOCAL ROLE {role}")).unwrap();
        let seen = Spi::get_one::<i64>("SELECT count(*) FROM doctrove_embed.jobs WHERE name = 'local'").unwrap();
        Spi::run("RESET ROLE").unwrap();
        seen
    };
    assert_eq!(jobs_seen("job_test_runner"), Some(1));
    assert_eq!(jobs_seen("job_test_stranger"), Some(0));

    // A role the job is not granted to is refused before any request; so is every role but
    // the owner when it tries to define, change or grant a job on the table.
    Spi::run("SET LOCAL ROLE job_test_stranger").unwrap();
    assert_eq!(sqlstate_of("SELECT embed_pending(2, 'local')"), "42501");
    assert_eq!(sqlstate_of("SELECT get_papers_needing_embeddings_count('local')"), "42501");
    assert_eq!(sqlstate_of("SELECT embed_pending(2, 'default')"), "42501");
    assert_eq!(sqlstate_of("SELECT doctrove_embed.grant_job('local', 'job_test_stranger')"), "42501");
    assert_eq!(
        sqlstate_of("SELECT doctrove_embed.create_job('mine', 'doctrove_papers', 'doctrove_embedding', 'm')"),
        "42501"
    );
    Spi::run("RESET ROLE; SET LOCAL ROLE job_test_runner").unwrap();
    assert_eq!(sqlstate_of("SELECT doctrove_embed.alter_job('local', model => 'attacker-model')"), "42501");
    assert_eq!(sqlstate_of("SELECT doctrove_embed.drop_job('local')"), "42501");
    Spi::run("RESET ROLE; SET LOCAL ROLE job_test_owner").unwrap();
    Spi::run("SELECT doctrove_embed.revoke_job('local', 'job_test_runner')").unwrap();
    Spi::run("RESET ROLE; SET LOCAL ROLE job_test_runner").unwrap();
    assert_eq!(sqlstate_of("SELECT embed_pending(2, 'local')"), "42501");
    Spi::run("RESET ROLE").unwrap();
    assert_eq!(stats("job_owner")["inputs"], 2, "only the granted run was sent");
    assert_eq!(local_vector(3), None);
}

#[pg_test]
fn a_paused_job_sends_nothing_and_a_resumed_one_runs() {
    use_mock("job_pause", "dim=8/");
    create_two_column_papers();
    create_local_job();
    Spi::run("SELECT doctrove_embed.pause_job('local')").unwrap();
    assert_eq!(sqlstate_of("SELECT embed_pending(10, 'local')"), "55000");
    assert_eq!(stats("job_pause")["requests"], 0);
    Spi::run("SELECT doctrove_embed.resume_job('local')").unwrap();
    assert_eq!(embed_job(10, "local"), (3, 0));
    assert_eq!(stats("job_pause")["inputs"], 3);
}

#[pg_test]
fn a_jobs_failures_are_its_own() {
    // The mock rejects (400) any request holding a text with "poison", whatever the model.
    use_mock("job_failures", "dim=8/poison=poison/");
    let failed_jobs =
        || Spi::get_one::<String>("SELECT string_agg(job, ',' ORDER BY job) FROM doctrove_embed.failures").unwrap();
    create_two_column_papers();
    insert(4, Some("poison"), None);
    create_local_job();
    let (first, second) = (embed_job(10, "local"), embed_job(10, "local"));
    assert_eq!((first.0 + second.0, first.1 + second.1), (3, 1));
    let rows = Spi::get_two::<String, String>("SELECT job, paper_id FROM doctrove_embed.failures").unwrap();
    assert_eq!(rows, (Some("local".into()), Some("4".into())));
    // The job default has not failed paper 4: it sends it (and records its own failure). The
    // papers after a rejected one in the search are left for the next batch.
    let (first, second) = (embed(10), embed(10));
    assert_eq!((first.0 + second.0, first.1 + second.1), (3, 1));
    assert_eq!(count(), 0);
    assert_eq!(failed_jobs(), Some("default,local".into()));
    assert_eq!(
        Spi::get_one::<i64>("SELECT failed FROM doctrove_embed.jobs WHERE name = 'local'").unwrap(),
        Some(1)
    );
    // Forgetting them is the job's own too: paper 4 is pending for it again (and rejected
    // again), the job default's failure stays.
    assert_eq!(Spi::get_one::<i64>("SELECT doctrove_embed.retry_failed('local')").unwrap(), Some(1));
    assert_eq!(failed_jobs(), Some("default".into()));
    assert_eq!(
        Spi::get_one::<i64>("SELECT get_papers_needing_embeddings_count('local')").unwrap(),
        Some(1)
    );
    assert_eq!(embed_job(10, "local"), (0, 1));
    assert_eq!(failed_jobs(), Some("default,local".into()));
    assert_eq!(
        [
            sqlstate_of("SELECT doctrove_embed.retry_failed(NULL)"),
            sqlstate_of("SELECT doctrove_embed.retry_failed('no_such_job')")
        ],
        ["22004", "42704"]
    );
    // Dropping the job forgets its failures and leaves its column's vectors.
    Spi::run("SELECT doctrove_embed.drop_job('local')").unwrap();
    assert_eq!(failed_jobs(), Some("default".into()));
    assert_eq!(local_vector(1), Some(vector_for("Title: Alpha Abstract: about Alpha", 8)));
}

#[pg_test]
fn a_dropped_table_takes_its_jobs_and_grants_with_it() {
    use_mock("job_drop", "dim=8/");
    Spi::run("CREATE ROLE job_test_grantee").unwrap();
    create_two_column_papers();
    create_local_job();
    Spi::run("SELECT doctrove_embed.grant_job('local', 'job_test_grantee')").unwrap();
    Spi::run("DROP TABLE doctrove_papers").unwrap();
    assert_eq!(
        Spi::get_one::<i64>("SELECT count(*) FROM doctrove_embed.job_definitions").unwrap(),
        Some(0)
    );
    assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM doctrove_embed.job_grants").unwrap(), Some(0));
    assert_eq!(sqlstate_of("SELECT embed_pending(10, 'local')"), "42704");
}

#[pg_test]
fn searches_switch_to_a_complete_indexed_job_in_one_step_and_back() {
    use_mock("job_search", "dim=16/");
    create_papers("bigint", "(16)");
    Spi::run("ALTER TABLE doctrove_papers ADD COLUMN local_embedding vector(8), ADD COLUMN local_model text").unwrap();
    let papers16 = embedded_papers(30);
    Spi::run(
        "SELECT doctrove_embed.create_job('local', 'doctrove_papers', 'local_embedding', 'local-model', \
         dimensions => 8, model_version_column => 'local_model')",
    )
    .unwrap();
    // Not before the job is complete, nor before its column has an HNSW index.
    assert_eq!(sqlstate_of("SELECT doctrove_embed.use_job_for_search('local')"), "55000");
    assert_eq!(embed_job(100, "local"), (30, 0));
    assert_eq!(sqlstate_of("SELECT doctrove_embed.use_job_for_search('local')"), "55000");
    assert_eq!(
        Spi::get_one::<String>("SELECT doctrove_embed.create_hnsw_index('local')").unwrap(),
        Some("public.doctrove_papers_local_embedding_hnsw_idx".into())
    );
    let query = "graph neural networks";
    let before = ids(&format!("SELECT paper_id FROM doctrove_embed.search('{query}', 3)"));
    assert_eq!(before, exact_order(&vector_for(query, 16), &papers16)[..3]);
    assert_eq!(stats("job_search")["last_model"], "text-embedding-3-small");

    Spi::run("SELECT doctrove_embed.use_job_for_search('local')").unwrap();
    let papers8: Vec<(i64, Vec<f32>)> = (1..=30).map(|id| (id, local_vector(id).unwrap())).collect();
    let after = ids(&format!("SELECT paper_id FROM doctrove_embed.search('{query}', 3)"));
    assert_eq!(after, exact_order(&vector_for(query, 8), &papers8)[..3]);
    let s = stats("job_search");
    assert_eq!((s["last_model"].as_str(), s["last_dimensions"].as_i64()), (Some("local-model"), Some(8)));
    let others: Vec<(i64, Vec<f32>)> = papers8.iter().filter(|(id, _)| *id != 5).cloned().collect();
    assert_eq!(
        ids("SELECT paper_id FROM doctrove_embed.similar_papers('5', 4)"),
        exact_order(&papers8[4].1, &others)[..4]
    );
    // The job searches read keeps its model and cannot be dropped.
    assert_eq!(sqlstate_of("SELECT doctrove_embed.alter_job('local', model => 'other-model')"), "55006");
    assert_eq!(sqlstate_of("SELECT doctrove_embed.drop_job('local')"), "2BP01");

    Spi::run("SELECT doctrove_embed.use_job_for_search('default')").unwrap();
    assert_eq!(ids(&format!("SELECT paper_id FROM doctrove_embed.search('{query}', 3)")), before);
    Spi::run("SELECT doctrove_embed.drop_job('local')").unwrap();
}

#[pg_test]
fn a_model_change_embeds_again_only_the_vectors_another_model_made() {
    use_mock("job_model", "dim=8/");
    create_two_column_papers();
    create_local_job();
    assert_eq!(embed_job(10, "local"), (3, 0));
    // Paper 2 is re-embedded by hand with the next model already.
    Spi::run("UPDATE doctrove_papers SET local_model = 'next-model' WHERE doctrove_paper_id = 2").unwrap();
    Spi::run("SELECT doctrove_embed.alter_job('local', model => 'next-model')").unwrap();
    assert_eq!(
        Spi::get_one::<i64>("SELECT get_papers_needing_embeddings_count('local')").unwrap(),
        Some(2)
    );
    assert_eq!(embed_job(10, "local"), (2, 0));
    let s = stats("job_model");
    assert_eq!((s["inputs"].as_i64(), s["last_model"].as_str()), (Some(5), Some("next-model")));
    assert_eq!(
        Spi::get_one::<i64>("SELECT count(*) FROM doctrove_papers WHERE local_model = 'next-model'").unwrap(),
        Some(3)
    );
    assert_eq!(local_vector(1), Some(vector_for("Title: Alpha Abstract: about Alpha", 8)));
    // A job that records no model per vector cannot change its model in place.
    Spi::run(
        "SELECT doctrove_embed.create_job('bare', 'doctrove_papers', 'doctrove_embedding', 'm1'); \
         SELECT 1",
    )
    .unwrap();
    assert_eq!(sqlstate_of("SELECT doctrove_embed.alter_job('bare', model => 'm2')"), "55000");
}

#[pg_test]
fn watching_a_job_re_embeds_its_column_alone_when_a_text_changes() {
    use_mock("job_watch", "dim=8/");
    create_two_column_papers();
    create_local_job();
    assert_eq!(embed_job(10, "local"), (3, 0));
    assert_eq!(embed(10), (3, 0));
    let watched = Spi::get_one::<String>("SELECT doctrove_embed.watch('local')").unwrap();
    assert_eq!(watched.as_deref(), Some("watching public.doctrove_papers for job local"));
    let triggers = Spi::get_one::<String>(
        "SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger WHERE tgrelid = 'doctrove_papers'::regclass",
    )
    .unwrap();
    assert_eq!(
        triggers.as_deref(),
        Some("doctrove_embed_reset_local_embedding,doctrove_embed_wake_local_embedding")
    );
    Spi::run("UPDATE doctrove_papers SET doctrove_title = 'Alpha, revised' WHERE doctrove_paper_id = 1").unwrap();
    assert_eq!(local_vector(1), None, "the job's column is cleared");
    assert!(stored_vector("1").is_some(), "the default's column is not watched");
    assert_eq!(embed_job(10, "local"), (1, 0));
    assert_eq!(local_vector(1), Some(vector_for("Title: Alpha, revised Abstract: about Alpha", 8)));
    Spi::run("SELECT doctrove_embed.unwatch('local')").unwrap();
    assert_eq!(
        Spi::get_one::<i64>("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'doctrove_papers'::regclass").unwrap(),
        Some(0)
    );
}

#[pg_test]
fn the_settings_are_the_job_default_in_the_jobs_view_for_the_roles_that_may_run_it() {
    use_mock("job_default_view", "dim=8/");
    create_two_column_papers();
    assert_eq!(embed(250), (3, 0));
    let row = Spi::get_three::<String, String, String>(
        "SELECT table_name, embedding_column, model FROM doctrove_embed.jobs WHERE name = 'default'",
    )
    .unwrap();
    assert_eq!(
        row,
        (
            Some("public.doctrove_papers".to_string()),
            Some("doctrove_embedding".to_string()),
            Some("text-embedding-3-small".to_string())
        )
    );
    // A role that may not run embed_pending(integer) does not see it.
    Spi::run("CREATE ROLE job_view_stranger; GRANT USAGE ON SCHEMA doctrove_embed TO job_view_stranger").unwrap();
    Spi::run("SET LOCAL ROLE job_view_stranger").unwrap();
    let seen = Spi::get_one::<i64>("SELECT count(*) FROM doctrove_embed.jobs WHERE name = 'default'").unwrap();
    Spi::run("RESET ROLE").unwrap();
    assert_eq!(seen, Some(0));
}
