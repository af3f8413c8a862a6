//! doctrove_embed: fills a pgvector embedding column from an OpenAI-compatible embeddings API,
//! inside PostgreSQL. This crate is the thin PostgreSQL glue (settings, SQL functions, SPI);
//! everything that needs no database lives in the `embed_core` crate of this workspace, where
//! plain `cargo test` covers it.

use pgrx::prelude::*;

// Layers, bottom to top: each module uses only those listed above it.
mod errors;
mod settings;
mod pg;
mod table;
mod http;
mod live;
mod batch_api;
mod workers;
mod api;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../sql/reset_embedding.sql", name = "reset_embedding", requires = [doctrove_embed::input_text]);
extension_sql_file!("../sql/failures.sql", name = "failures", requires = [doctrove_embed::input_text]);
extension_sql_file!("../sql/batches.sql", name = "batches", requires = ["failures"]);
extension_sql_file!(
    "../sql/status_views.sql",
    name = "status_views",
    requires = [
        doctrove_embed::status_snapshot,
        doctrove_embed::worker_snapshot,
        doctrove_embed::batch_snapshot,
        "failures",
        "batches"
    ]
);
extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: reads a flag PostgreSQL sets while it loads shared_preload_libraries.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    settings::gucs::register(preloading);
    settings::secret_guard::install();
    if preloading {
        pg::shared_state::init();
        workers::worker::register_workers();
    }
    reserve_setting_prefix();
    // Until the library is loaded, a key set in postgresql.conf is an unchecked placeholder
    // that any role can read with SHOW; only preloading protects it in every session.
    if !preloading && !settings::api_key::current().is_empty() {
        errors::UserError::new(
            PgSqlErrorCode::ERRCODE_WARNING,
            "doctrove_embed.api_key is set but doctrove_embed is not in shared_preload_libraries",
        )
        .detail("Sessions that have not loaded the library can read the key with SHOW.")
        .hint("Add doctrove_embed to shared_preload_libraries and restart the server.")
        .warn();
    }
}

/// Unknown doctrove_embed.* names (typos) are rejected instead of becoming placeholders. Before
/// PostgreSQL 15 the server can only warn about those already set.
fn reserve_setting_prefix() {
    // SAFETY: called once, from _PG_init, with a static C string.
    #[cfg(not(any(feature = "pg13", feature = "pg14")))]
    unsafe {
        pg_sys::MarkGUCPrefixReserved(c"doctrove_embed".as_ptr())
    };
    // SAFETY: as above.
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    unsafe {
        pg_sys::EmitWarningsOnPlaceholders(c"doctrove_embed".as_ptr())
    };
}

/// Embeds up to `batch` pending papers of the configured table in the caller's transaction.
#[pg_extern(parallel_unsafe)]
fn embed_pending(
    batch: default!(i32, 250),
) -> TableIterator<
    'static,
    (
        name!(successful_embeddings, i32),
        name!(failed_embeddings, i32),
        name!(fetch_ms, f64),
        name!(api_ms, f64),
        name!(db_ms, f64),
    ),
> {
    let outcome = live::batch::run_batch(batch, live::batch::Acting::Caller, &mut |_, _| {}).unwrap_or_else(|e| e.raise());
    pg::at_commit::record_batch(&outcome);
    if let Some(error) = &outcome.stopped_by {
        // What was answered is written; the caller learns why the rest is still pending.
        error.clone().warn();
    }
    TableIterator::once((outcome.successful, outcome.failed, outcome.fetch_ms, outcome.api_ms, outcome.db_ms))
}

/// The exact number of papers in the configured table still waiting for an embedding.
#[pg_extern(parallel_unsafe)]
fn get_papers_needing_embeddings_count() -> i64 {
    let start = std::time::Instant::now();
    let (relid, pending) = live::batch::count_pending().unwrap_or_else(|e| e.raise());
    // The status view shows this figure until a newer count replaces it.
    pg::shared_state::store_pending_count(relid, pending, start.elapsed().as_secs_f64() * 1000.0);
    pending
}

#[pg_schema]
mod doctrove_embed {
    use pgrx::prelude::*;

    /// Creates the partial index on pending papers (without CONCURRENTLY: it blocks writes to
    /// the table while it builds) and returns its name.
    #[pg_extern(parallel_unsafe)]
    fn create_pending_index() -> String {
        let target = crate::table::target::resolve().unwrap_or_else(|e| e.raise());
        if let Some(existing) = crate::table::pending_index::find(&target) {
            return existing;
        }
        crate::table::watch::run_ddl(&target.names.create_pending_index(false), "create the index");
        crate::table::pending_index::find(&target).unwrap_or_else(|| target.names.pending_index_name())
    }

    /// The `CREATE INDEX CONCURRENTLY` command for the partial index on pending papers, to run
    /// outside a transaction block (in psql: `SELECT doctrove_embed.pending_index_command() \gexec`).
    #[pg_extern(parallel_unsafe)]
    fn pending_index_command() -> String {
        crate::table::target::resolve().unwrap_or_else(|e| e.raise()).names.create_pending_index(true)
    }

    /// Installs the triggers that keep the configured table's embeddings current: new papers
    /// wake the background workers when their transaction commits, and an edit of the title or
    /// abstract clears the embedding so the paper is embedded again. Idempotent.
    #[pg_extern(parallel_unsafe)]
    fn watch() -> String {
        let target = crate::table::target::resolve().unwrap_or_else(|e| e.raise());
        for (name, create) in target.names.watch_triggers() {
            crate::table::watch::drop_trigger_if_present(&target, name);
            crate::table::watch::run_ddl(&create, "install the trigger");
        }
        format!("watching {}", target.names.table)
    }

    /// Removes the triggers `watch()` installed.
    #[pg_extern(parallel_unsafe)]
    fn unwatch() -> String {
        let target = crate::table::target::resolve().unwrap_or_else(|e| e.raise());
        for (name, _) in target.names.watch_triggers() {
            crate::table::watch::drop_trigger_if_present(&target, name);
        }
        format!("no longer watching {}", target.names.table)
    }

    /// Forgets the configured table's rejected papers, so they are tried again; returns how many.
    #[pg_extern(parallel_unsafe)]
    fn retry_failed() -> i64 {
        let target = crate::table::target::resolve().unwrap_or_else(|e| e.raise());
        if !crate::pg::identity::may_update(target.relid) {
            crate::errors::UserError::new(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("permission denied for table {}", target.names.table),
            )
            .detail("Forgetting a table's rejected papers needs the right to update the table.")
            .raise();
        }
        crate::table::failures::clear_all(&target)
    }

    /// Builds an HNSW index for cosine distance on the embedding column (pgvector's default
    /// m = 16, ef_construction = 64) and returns its name. Build it after the backfill: one
    /// build over all vectors is much faster than maintaining the graph on every write.
    #[pg_extern(parallel_unsafe)]
    fn create_hnsw_index() -> String {
        let target = crate::table::target::resolve().unwrap_or_else(|e| e.raise());
        if let Some(existing) = crate::table::similarity::hnsw_index(&target) {
            return existing;
        }
        crate::table::watch::run_ddl(&target.names.create_hnsw_index(), "create the index");
        crate::table::similarity::hnsw_index(&target).unwrap_or_else(|| target.names.hnsw_index_name())
    }

    /// The `k` papers most similar to paper `paper_id` (cosine distance), itself left out.
    #[pg_extern(parallel_unsafe)]
    fn similar_papers(
        paper_id: &str,
        k: default!(i32, 10),
    ) -> TableIterator<'static, (name!(paper_id, String), name!(title, Option<String>), name!(distance, f64))> {
        let target = crate::table::target::resolve().unwrap_or_else(|e| e.raise());
        TableIterator::new(crate::table::similarity::similar_papers(&target, paper_id, k))
    }

    /// The `k` papers most similar to `query`, embedded through the configured API.
    #[pg_extern(parallel_unsafe)]
    fn search(
        query: &str,
        k: default!(i32, 10),
    ) -> TableIterator<'static, (name!(paper_id, String), name!(title, Option<String>), name!(distance, f64))> {
        crate::table::similarity::check_k(k).unwrap_or_else(|e| e.raise());
        let target = crate::table::target::resolve().unwrap_or_else(|e| e.raise());
        let vector = crate::table::similarity::search(&target, query).unwrap_or_else(|e| e.raise());
        TableIterator::new(crate::table::similarity::nearest(&target, &vector, k))
    }

    /// Statement trigger: wake an idle background worker when this transaction commits.
    #[pg_trigger]
    fn wake_workers<'a>(
        _trigger: &'a pgrx::PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgHeapTupleError> {
        crate::pg::at_commit::wake_a_worker();
        Ok(None)
    }

    /// The figures behind the `doctrove_embed.status` view.
    #[pg_extern(parallel_unsafe)]
    fn status_snapshot() -> TableIterator<
        'static,
        (
            name!(pending, Option<i64>),
            name!(pending_counted_at, Option<f64>),
            name!(embedded, i64),
            name!(failed_since_start, i64),
            name!(papers_per_min_1m, f64),
            name!(papers_per_min_10m, f64),
            name!(eta_seconds, Option<f64>),
            name!(tokens_used, i64),
            name!(workers_running, i32),
            name!(workers_configured, i32),
            name!(enabled, bool),
            name!(hnsw_index, Option<String>),
        ),
    > {
        let s = crate::api::status::status().unwrap_or_else(|e| e.raise());
        TableIterator::once((
            s.pending,
            s.pending_counted_at,
            s.embedded,
            s.failed,
            s.per_minute_1m,
            s.per_minute_10m,
            s.eta_seconds,
            s.tokens,
            s.workers_running,
            s.workers_configured,
            s.enabled,
            s.hnsw_index,
        ))
    }

    /// The Batch API figures of the `doctrove_embed.status` view.
    #[pg_extern(parallel_unsafe)]
    fn batch_snapshot() -> TableIterator<
        'static,
        (
            name!(papers_in_batches, i64),
            name!(batch_tokens_used, i64),
            name!(live_cost_usd, f64),
            name!(batch_cost_usd, f64),
        ),
    > {
        TableIterator::once(crate::api::batch_api::snapshot())
    }

    /// The figures behind the `doctrove_embed.workers` view.
    #[pg_extern(parallel_unsafe)]
    fn worker_snapshot() -> TableIterator<
        'static,
        (
            name!(worker, i32),
            name!(pid, i32),
            name!(state, String),
            name!(batches, i64),
            name!(papers_embedded, i64),
            name!(failures, i64),
            name!(last_error, Option<String>),
            name!(last_batch_at, Option<f64>),
        ),
    > {
        TableIterator::new(crate::api::status::workers().into_iter().map(|w| {
            (w.worker, w.pid, w.state, w.batches, w.embedded, w.failures, w.last_error, w.last_batch_at)
        }))
    }

    /// The text sent to the API for a paper with this title and abstract; NULL when the paper
    /// is never sent (no title).
    #[pg_extern(immutable, parallel_safe)]
    fn input_text(title: Option<&str>, abstract_text: Option<&str>) -> Option<String> {
        embed_core::paper_input(title, abstract_text)
    }
}

/// Required by `cargo pgrx test`: one-off set-up and the test cluster's settings.
#[cfg(test)]
pub mod pg_test {
    use std::sync::OnceLock;

    use doctrove_mock::{MockConfig, MockServer};

    static MOCK: OnceLock<MockServer> = OnceLock::new();

    /// The mock embeddings server, started once in the test runner's process.
    fn mock() -> &'static MockServer {
        MOCK.get_or_init(|| {
            MockServer::start("127.0.0.1:0", MockConfig { default_dims: 1536 }).expect("start the mock")
        })
    }

    pub fn setup(_options: Vec<&str>) {
        mock();
    }

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        let url: &'static str = Box::leak(format!("doctrove_embed.api_base_url = '{}/v1'", mock().url()).into_boxed_str());
        vec![url, "doctrove_embed.api_key = 'sk-test-0123456789'", "shared_preload_libraries = 'doctrove_embed'", "doctrove_embed.workers = 0"]
    }
}
