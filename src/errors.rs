//! User-facing errors: each carries a real SQLSTATE, a message, and where it helps a detail
//! and a hint. API failures map here from [`embed_core::ApiError`].

use embed_core::ApiError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// An error to raise at ERROR level.
#[derive(Clone)]
pub struct UserError {
    code: PgSqlErrorCode,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
}

impl UserError {
    pub fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Self {
        UserError {
            code,
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The message alone, without detail or hint (a detail can quote a row's contents).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The SQLSTATE.
    pub fn code(&self) -> PgSqlErrorCode {
        self.code
    }

    /// Whether this is a cancel (`pg_cancel_backend`, `statement_timeout`), which must end the
    /// statement rather than be handled.
    pub fn is_cancel(&self) -> bool {
        self.code == PgSqlErrorCode::ERRCODE_QUERY_CANCELED
    }

    /// Whether a row caused this error when it comes from writing that row: an integrity
    /// violation (class 23: a constraint, a unique key), a data exception (class 22: a value the
    /// row's columns or its triggers refuse), or an exception the table's own triggers raise
    /// (P0001). Privileges, resources (disk, memory), locks, deadlocks, serialization failures
    /// and system errors belong to the statement or the server, never to one paper.
    pub fn is_caused_by_a_row(&self) -> bool {
        let state = self.sqlstate();
        state.starts_with("22") || state.starts_with("23") || state == "P0001"
    }

    /// The five-character SQLSTATE, such as `23514`.
    pub fn sqlstate(&self) -> String {
        // SAFETY: unpack_sql_state writes the code into a static buffer of PostgreSQL's.
        unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::unpack_sql_state(self.code as i32)) }
            .to_string_lossy()
            .into_owned()
    }

    /// The message with its detail, on one line (for logs and the workers view).
    pub fn summary(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{}: {detail}", self.message),
            None => self.message.clone(),
        }
    }

    fn report(self, level: PgLogLevel) {
        let mut report = ErrorReport::new(self.code, self.message, "doctrove_embed");
        if let Some(detail) = self.detail {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint {
            report = report.set_hint(hint);
        }
        report.report(level);
    }

    /// An ERROR raised inside PostgreSQL (a trigger, a constraint, a lock timeout) or a panic,
    /// caught so a background worker can log it and carry on.
    pub fn from_caught(caught: pgrx::pg_sys::panic::CaughtError) -> Self {
        use pgrx::pg_sys::panic::CaughtError;
        let report = match &caught {
            CaughtError::PostgresError(report) | CaughtError::ErrorReport(report) => report,
            CaughtError::RustPanic { ereport, .. } => ereport,
        };
        let cut = |text: &str| embed_core::bounds::cut_message(text, embed_core::bounds::MAX_MESSAGE_CHARS);
        UserError {
            code: report.sql_error_code(),
            message: cut(report.message()),
            detail: report.detail().map(cut),
            hint: report.hint().map(cut),
        }
    }

    /// Raises the error: the statement fails and its transaction rolls back.
    pub fn raise(self) -> ! {
        self.report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }

    /// Reports the same text as a WARNING and carries on.
    pub fn warn(self) {
        self.report(PgLogLevel::WARNING);
    }
}

/// The error for a statement of the extension's own that failed for a reason no user caused
/// (`could not WHAT: ...`), as a function for `map_err`.
pub fn internal(what: &'static str) -> impl Fn(pgrx::spi::Error) -> UserError {
    move |e| UserError::new(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("could not {what}: {e}"))
}

/// The error for a failed API request: SQLSTATE by kind, the API's own message as detail.
pub fn api_error(error: &ApiError) -> UserError {
    use PgSqlErrorCode::*;
    match error {
        ApiError::Unreachable { .. } => UserError::new(ERRCODE_CONNECTION_EXCEPTION, error.to_string())
            .hint("Check doctrove_embed.api_base_url and that the server can reach it."),
        ApiError::Timeout { .. } => UserError::new(ERRCODE_CONNECTION_FAILURE, error.to_string())
            .hint("Raise doctrove_embed.request_timeout_ms, or embed smaller batches."),
        ApiError::Unauthorized { status, message } => UserError::new(
            ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION,
            format!("the embeddings API refused the API key (HTTP {status})"),
        )
        .detail(message.clone())
        .hint("Set doctrove_embed.api_key (or doctrove_embed.api_key_file) to a valid key, as a superuser, in postgresql.conf or with ALTER SYSTEM."),
        ApiError::RateLimited { message, code, .. } => {
            let quota = code.as_deref() == Some("insufficient_quota");
            UserError::new(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED, if quota {
                "the embeddings API account has no quota left (HTTP 429)".to_string()
            } else {
                "the embeddings API is rate limiting requests (HTTP 429)".to_string()
            })
            .detail(message.clone())
            .hint(if quota { "Add credit or raise the account's quota, then run again." } else { "Run again later, or embed smaller batches." })
        }
        ApiError::Rejected { status, message, .. } => UserError::new(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("the embeddings API rejected the request (HTTP {status})"),
        )
        .detail(message.clone())
        .hint("Check doctrove_embed.model and doctrove_embed.dimensions, and the texts of this batch."),
        ApiError::ServerError { status, message, .. } => UserError::new(
            ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
            format!("the embeddings API failed (HTTP {status})"),
        )
        .detail(message.clone())
        .hint("This is usually temporary: run again later."),
        ApiError::WrongShape { problem, dimensions: true } => UserError::new(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "the embeddings API answers vectors of another length than the column holds",
        )
        .detail(problem.clone())
        .hint("Set doctrove_embed.dimensions to the column's length (or to 0), or doctrove_embed.model to a model of that length, or give the column the model's length."),
        ApiError::WrongShape { problem, dimensions: false } => UserError::new(
            ERRCODE_EXTERNAL_ROUTINE_INVOCATION_EXCEPTION,
            "the embeddings API answers another number of vectors than texts sent",
        )
        .detail(problem.clone())
        .hint("Check that doctrove_embed.api_base_url points at an OpenAI-compatible embeddings API."),
        ApiError::RefusesEverything { message } => UserError::new(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "the embeddings API refuses every request, even a one-word one",
        )
        .detail(message.clone())
        .hint("A setting is wrong, not a text: check doctrove_embed.model, doctrove_embed.dimensions and doctrove_embed.api_base_url. No paper was marked as rejected."),
        ApiError::Redirected { status, location } => UserError::new(
            ERRCODE_CONNECTION_EXCEPTION,
            format!("the embeddings API answered with a redirect (HTTP {status})"),
        )
        .detail(format!("It points to {location}. Redirects are not followed, so the API key is sent only to doctrove_embed.api_base_url."))
        .hint("Set doctrove_embed.api_base_url to the API's real address, if you trust the host the redirect names."),
        ApiError::Malformed(problem) => UserError::new(
            ERRCODE_EXTERNAL_ROUTINE_INVOCATION_EXCEPTION,
            "the embeddings API sent an invalid response",
        )
        .detail(problem.clone())
        .hint("Check that doctrove_embed.api_base_url points at an OpenAI-compatible embeddings API."),
    }
}
