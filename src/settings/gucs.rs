//! Every `doctrove_embed.*` setting, registered from `_PG_init`.
//!
//! Settings that decide where requests (and so the API key) go are superuser-only (`SUSET`):
//! otherwise a role allowed to run `embed_pending` could point `api_base_url` at its own
//! server and receive the key. Table and column names are per session (`USERSET`): the
//! function runs with the caller's privileges, so a role reaches only tables it may update.

use std::ffi::{CStr, CString};

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};

/// The table holding the papers (may be schema-qualified).
pub static TABLE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"doctrove_papers"));
/// Its key column: any type with a unique index.
pub static ID_COLUMN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"doctrove_paper_id"));
/// The title column; papers with a NULL or empty title are never sent.
pub static TITLE_COLUMN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"doctrove_title"));
/// The abstract column; empty means the table has none.
pub static ABSTRACT_COLUMN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"doctrove_abstract"));
/// The pgvector column to fill.
pub static EMBEDDING_COLUMN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"doctrove_embedding"));
/// Set to the model name on each write, when the table has it; empty to skip.
pub static MODEL_VERSION_COLUMN: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"embedding_model_version"));
/// Set to `now()` on each write, when the table has it; empty to skip.
pub static UPDATED_AT_COLUMN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"updated_at"));

/// OpenAI-compatible base URL; `/embeddings` is appended (a query string is kept).
pub static API_BASE_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"https://api.openai.com/v1"));
/// The API key. Superuser-only, hidden from SHOW ALL and from non-superusers.
pub static API_KEY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// A file holding the API key, read when `api_key` is empty.
pub static API_KEY_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// A file defining named endpoints for jobs (see `embed_core::endpoints`).
pub static ENDPOINTS_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// The header that carries the key: `Authorization` sends `Bearer KEY`, any other the bare key.
pub static API_KEY_HEADER: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"Authorization"));
/// The embeddings model.
pub static MODEL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"text-embedding-3-small"));
/// Sent as `dimensions` when greater than 0.
pub static DIMENSIONS: GucSetting<i32> = GucSetting::<i32>::new(0);
/// How long one API request may take, in milliseconds.
pub static REQUEST_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);

/// Databases the background workers serve, comma-separated; empty: every database where the
/// extension is installed.
pub static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c""));
/// Whether the background workers embed (on/off without a restart).
pub static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
/// How a search text is put before it is embedded (`{query}` stands for it), so it takes the
/// stored texts' form.
pub static QUERY_FORMAT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"{query}"));
/// How long a query's embedding is kept in the server-wide cache, in seconds (0: not cached).
pub static QUERY_CACHE_TTL_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
/// How many background workers start with the server; each keeps one request in flight.
pub static WORKERS: GucSetting<i32> = GucSetting::<i32>::new(1);
/// Papers per worker batch.
pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(250);
/// How long an idle worker sleeps before it looks for pending papers again.
pub static NAPTIME_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// Retries of a request after a connection error, timeout, 408, 409, 429 or 5xx.
pub static MAX_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(6);
/// Attempts before a paper the API rejects is no longer selected.
pub static MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(3);
/// How long a paper the API rejected waits before it is tried again.
pub static FAILED_RETRY_DELAY_MS: GucSetting<i32> = GucSetting::<i32>::new(600_000);
/// Token budget of one request.
pub static MAX_TOKENS_PER_REQUEST: GucSetting<i32> = GucSetting::<i32>::new(300_000);

/// Tokens per minute all workers and sessions of the server may send together; 0 = unlimited.
pub static MAX_TOKENS_PER_MINUTE: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Requests per minute all workers and sessions of the server may send together; 0 = unlimited.
pub static MAX_REQUESTS_PER_MINUTE: GucSetting<i32> = GucSetting::<i32>::new(0);

/// Whether the background workers also submit and collect Batch API batches.
pub static BATCH_API: GucSetting<bool> = GucSetting::<bool>::new(false);
/// The workers submit batches while more papers than this are pending and in no batch.
pub static BATCH_API_MIN_PAPERS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
/// Tokens the account may have enqueued in the Batch API for the model; 0 = not known.
pub static BATCH_API_MAX_ENQUEUED_TOKENS: GucSetting<f64> = GucSetting::<f64>::new(0.0);
/// How often the workers poll open batches.
pub static BATCH_API_POLL_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);
/// Papers per batch (the API takes at most 50,000 inputs per batch).
pub static BATCH_API_MAX_PAPERS: GucSetting<i32> = GucSetting::<i32>::new(50_000);

/// Most kilobytes of paper text (titles and abstracts) one fetch of pending papers reads: a
/// live batch, or the papers of one Batch API file. The fetch stops taking papers there, so a
/// call's memory is bounded however long the texts are.
pub static FETCH_TEXT_BUDGET_KB: GucSetting<i32> = GucSetting::<i32>::new(8 * 1024);

/// What the live endpoint charges per million tokens, in dollars; the Batch API charges half.
pub static PRICE_PER_MILLION_TOKENS: GucSetting<f64> = GucSetting::<f64>::new(0.02);

/// Most workers `doctrove_embed.workers` accepts (the size of the shared worker table).
pub const MAX_WORKERS: i32 = 64;

pub const DEFAULT_MODEL_VERSION_COLUMN: &str = "embedding_model_version";
pub const DEFAULT_UPDATED_AT_COLUMN: &str = "updated_at";

/// The current value of a text setting; empty when unset.
pub fn text(setting: &GucSetting<Option<CString>>) -> String {
    setting.get().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default()
}

fn define_text(name: &'static CStr, short: &'static CStr, setting: &'static GucSetting<Option<CString>>, context: GucContext) {
    GucRegistry::define_string_guc(name, short, c"", setting, context, GucFlags::default());
}

/// Registers every setting. `preloading`: the library is being loaded from
/// `shared_preload_libraries`. Only then can `workers` be a restart-only (`PGC_POSTMASTER`)
/// setting: PostgreSQL ends a session that defines one later (`CREATE EXTENSION` or `LOAD`
/// without the preload) with FATAL. Loaded late, it is defined as a reload setting, which has
/// no effect: no worker starts without the preload.
pub fn register(preloading: bool) {
    define_text(
        c"doctrove_embed.table",
        c"Table whose embeddings are filled (may be schema-qualified).",
        &TABLE,
        GucContext::Userset,
    );
    define_text(
        c"doctrove_embed.id_column",
        c"Key column of the table; needs a unique index.",
        &ID_COLUMN,
        GucContext::Userset,
    );
    define_text(
        c"doctrove_embed.title_column",
        c"Title column; papers without a title are skipped.",
        &TITLE_COLUMN,
        GucContext::Userset,
    );
    define_text(
        c"doctrove_embed.abstract_column",
        c"Abstract column; empty if the table has none.",
        &ABSTRACT_COLUMN,
        GucContext::Userset,
    );
    define_text(
        c"doctrove_embed.embedding_column",
        c"pgvector column to fill.",
        &EMBEDDING_COLUMN,
        GucContext::Userset,
    );
    define_text(
        c"doctrove_embed.model_version_column",
        c"Column set to the model name on each write, if the table has it; empty to skip.",
        &MODEL_VERSION_COLUMN,
        GucContext::Userset,
    );
    define_text(
        c"doctrove_embed.updated_at_column",
        c"Column set to now() on each write, if the table has it; empty to skip.",
        &UPDATED_AT_COLUMN,
        GucContext::Userset,
    );
    define_text(
        c"doctrove_embed.api_base_url",
        c"Base URL of the OpenAI-compatible embeddings API.",
        &API_BASE_URL,
        GucContext::Suset,
    );
    crate::settings::api_key::define(&API_KEY);
    GucRegistry::define_string_guc(
        c"doctrove_embed.api_key_file",
        c"File holding the API key, read when doctrove_embed.api_key is empty.",
        c"",
        &API_KEY_FILE,
        GucContext::Suset,
        GucFlags::SUPERUSER_ONLY,
    );
    GucRegistry::define_string_guc(
        c"doctrove_embed.endpoints_file",
        c"File defining the named endpoints jobs may use (URL, key file, key header, rate limits).",
        c"",
        &ENDPOINTS_FILE,
        GucContext::Sighup,
        GucFlags::SUPERUSER_ONLY,
    );
    define_text(
        c"doctrove_embed.api_key_header",
        c"Header carrying the key: Authorization sends 'Bearer KEY', any other name the bare key.",
        &API_KEY_HEADER,
        GucContext::Suset,
    );
    define_text(
        c"doctrove_embed.model",
        c"Embeddings model name.",
        &MODEL,
        GucContext::Userset,
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.dimensions",
        c"Vector length to ask the API for; 0 sends no 'dimensions' field.",
        c"",
        &DIMENSIONS,
        0,
        16_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    define_text(
        c"doctrove_embed.database",
        c"Databases the background workers serve, comma-separated (empty: every database where the extension is installed).",
        &DATABASE,
        GucContext::Sighup,
    );
    GucRegistry::define_bool_guc(
        c"doctrove_embed.enabled",
        c"Whether the background workers embed pending papers.",
        c"",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.workers",
        c"Background workers started with the server (needs shared_preload_libraries); each keeps one request in flight.",
        c"",
        &WORKERS,
        0,
        MAX_WORKERS,
        if preloading {
            GucContext::Postmaster
        } else {
            GucContext::Sighup
        },
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.batch_size",
        c"Papers per background worker batch.",
        c"",
        &BATCH_SIZE,
        1,
        100_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    define_text(
        c"doctrove_embed.query_format",
        c"How a search text is put before it is embedded ({query} stands for it), such as 'Title: {query}'.",
        &QUERY_FORMAT,
        GucContext::Userset,
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.query_cache_ttl_s",
        c"How long a search's query embedding is kept in the server-wide cache (0: not cached).",
        c"",
        &QUERY_CACHE_TTL_S,
        0,
        604_800,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.naptime_ms",
        c"How long an idle background worker sleeps before it looks for pending papers again.",
        c"",
        &NAPTIME_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.max_retries",
        c"Retries of a request after a connection error, timeout, 408, 409, 429 or 5xx.",
        c"",
        &MAX_RETRIES,
        0,
        100,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.max_attempts",
        c"Attempts before a paper the API rejects is no longer selected (see doctrove_embed.failures).",
        c"",
        &MAX_ATTEMPTS,
        1,
        1000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.failed_retry_delay_ms",
        c"How long a paper the API rejected waits before it is tried again.",
        c"",
        &FAILED_RETRY_DELAY_MS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.max_tokens_per_request",
        c"Token budget of one request (cl100k_base tokens); a batch over it is sent as several requests.",
        c"",
        &MAX_TOKENS_PER_REQUEST,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.max_tokens_per_minute",
        c"Tokens per minute the whole server may send (shared by all workers and sessions); 0 = unlimited.",
        c"",
        &MAX_TOKENS_PER_MINUTE,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.max_requests_per_minute",
        c"Requests per minute the whole server may send (shared by all workers and sessions); 0 = unlimited.",
        c"",
        &MAX_REQUESTS_PER_MINUTE,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.request_timeout_ms",
        c"Time one API request may take.",
        c"",
        &REQUEST_TIMEOUT_MS,
        100,
        3_600_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_bool_guc(
        c"doctrove_embed.batch_api",
        c"Whether the background workers submit the backlog through the Batch API (and collect it).",
        c"",
        &BATCH_API,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.batch_api_min_papers",
        c"The background workers submit batches while more papers than this are pending and in no batch.",
        c"",
        &BATCH_API_MIN_PAPERS,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"doctrove_embed.batch_api_max_enqueued_tokens",
        c"Tokens the account may have enqueued in the Batch API for the model (0 = not known).",
        c"Submissions stop short of it; a batch the API refuses for it is released and sent again later.",
        &BATCH_API_MAX_ENQUEUED_TOKENS,
        0.0,
        1e15,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.batch_api_poll_ms",
        c"How often the background workers poll open batches.",
        c"",
        &BATCH_API_POLL_MS,
        100,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.batch_api_max_papers",
        c"Papers per Batch API batch.",
        c"",
        &BATCH_API_MAX_PAPERS,
        1,
        embed_core::batch_file::MAX_BATCH_INPUTS as i32,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"doctrove_embed.fetch_text_budget",
        c"Most paper text one fetch of pending papers reads (a live batch, or one Batch API file); the fetch stops taking papers there.",
        c"Bounds the memory of each call however long the texts are.",
        &FETCH_TEXT_BUDGET_KB,
        64,
        1024 * 1024,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_float_guc(
        c"doctrove_embed.price_per_million_tokens",
        c"What the live endpoint charges per million tokens, in dollars (the Batch API charges half); for the status view's costs.",
        c"",
        &PRICE_PER_MILLION_TOKENS,
        0.0,
        1e6,
        GucContext::Userset,
        GucFlags::default(),
    );
}
