//! doctrove_embed: fills a pgvector embedding column from an OpenAI-compatible embeddings API,
//! inside PostgreSQL. This crate is the thin PostgreSQL glue (settings, SQL functions, SPI);
//! everything that needs no database lives in the `embed_core` crate of this workspace, where
//! plain `cargo test` covers it.

use pgrx::prelude::*;

// Layers, bottom to top: each module uses only those listed above it.
mod api;
mod batch_api;
mod errors;
mod http;
mod live;
mod pg;
mod settings;
mod table;
mod workers;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!(
    "../sql/reset_embedding.sql",
    name = "reset_embedding",
    requires = [api::input_text::input_text]
);
extension_sql_file!(
    "../sql/failures.sql",
    name = "failures",
    requires = [api::input_text::input_text]
);
extension_sql_file!("../sql/batches.sql", name = "batches", requires = ["failures"]);
// After batches: the configuration tables are listed in the order an update from 0.3.0 adds them.
extension_sql_file!("../sql/jobs.sql", name = "jobs", requires = ["batches"]);
extension_sql_file!("../sql/search_targets.sql", name = "search_targets", requires = ["jobs"]);
extension_sql_file!(
    "../sql/installation.sql",
    name = "installation",
    requires = ["search_targets"]
);
extension_sql_file!(
    "../sql/job_views.sql",
    name = "job_views",
    requires = ["jobs", api::jobs::job_snapshot]
);
extension_sql_file!(
    "../sql/status_views.sql",
    name = "status_views",
    requires = [
        api::status::status_snapshot,
        api::status::worker_snapshot,
        api::status::batch_snapshot,
        api::status::query_cache_snapshot,
        "failures",
        "batches"
    ]
);
extension_sql_file!(
    "../sql/submit_backfill.sql",
    name = "submit_backfill",
    requires = [api::batch_api::submit_batches, api::batch_api::submit_batches_of_job]
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
        pg::job_figures::init();
        pg::endpoint_state::init();
        pg::query_cache::init();
        pg::extension_hook::install();
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

/// Required by `cargo pgrx test`: one-off set-up and the test cluster's settings.
#[cfg(test)]
pub mod pg_test {
    use std::sync::OnceLock;

    use doctrove_mock::{MockConfig, MockServer};

    static MOCK: OnceLock<MockServer> = OnceLock::new();

    /// The mock embeddings server, started once in the test runner's process.
    fn mock() -> &'static MockServer {
        MOCK.get_or_init(|| MockServer::start("127.0.0.1:0", MockConfig { default_dims: 1536 }).expect("start the mock"))
    }

    pub fn setup(_options: Vec<&str>) {
        mock();
    }

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        let url: &'static str = Box::leak(format!("doctrove_embed.api_base_url = '{}/v1'", mock().url()).into_boxed_str());
        vec![
            url,
            "doctrove_embed.api_key = 'sk-test-0123456789'",
            "shared_preload_libraries = 'doctrove_embed'",
            "doctrove_embed.workers = 0",
        ]
    }
}
