//! The API settings in force: base URL, key (from `doctrove_embed.api_key` or the key file),
//! key header, model, dimensions and timeout.

use std::time::Duration;

use embed_core::ApiConfig;

use crate::errors::UserError;
use crate::settings::{api_key, gucs};

/// Largest key file read.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The key in the file `path`, named by `setting`.
pub fn key_from_file(setting: &str, path: &str) -> Result<String, UserError> {
    Ok(read_private_file(setting, path, MAX_KEY_FILE_BYTES, "the key")?
        .trim()
        .to_string())
}

/// The text of file `path` (at most `max_bytes`), named by `setting`. Like PostgreSQL's own key
/// files (`ssl_key_file`), it must belong to the server's operating-system user and be readable
/// by no one else.
pub fn read_private_file(setting: &str, path: &str, max_bytes: u64, holding: &str) -> Result<String, UserError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let problem = |what: String, hint: &str| {
        UserError::new(
            pgrx::PgSqlErrorCode::ERRCODE_CONFIG_FILE_ERROR,
            format!("{setting} \"{path}\" {what}"),
        )
        .hint(hint.to_string())
    };
    let file = std::fs::File::open(path).map_err(|e| {
        problem(
            format!("cannot be read: {e}"),
            "The file must be readable by the PostgreSQL server's operating-system user.",
        )
    })?;
    let meta = file
        .metadata()
        .map_err(|e| problem(format!("cannot be read: {e}"), "Check the file."))?;
    // SAFETY: reads this process's effective user id.
    let server_user = unsafe { libc::geteuid() };
    let fix = "Make the file belong to the server's operating-system user and readable by it alone: chown postgres FILE; chmod 600 FILE.";
    if meta.uid() != server_user {
        return Err(problem("does not belong to the server's operating-system user".into(), fix));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(problem(
            format!("is readable by other users (mode {:04o})", meta.mode() & 0o7777),
            fix,
        ));
    }
    let mut text = String::new();
    file.take(max_bytes).read_to_string(&mut text).map_err(|e| {
        problem(
            format!("cannot be read: {e}"),
            &format!("The file must hold {holding} as text."),
        )
    })?;
    Ok(text)
}

/// The API settings as they are now. The key comes from `doctrove_embed.api_key`, or else
/// from the file named by `doctrove_embed.api_key_file`.
pub fn current_config() -> Result<ApiConfig, UserError> {
    let mut key = api_key::current();
    let key_file = gucs::text(&gucs::API_KEY_FILE);
    if key.is_empty() && !key_file.is_empty() {
        key = key_from_file("doctrove_embed.api_key_file", &key_file)?;
    }
    Ok(ApiConfig {
        base_url: gucs::text(&gucs::API_BASE_URL),
        api_key: key,
        api_key_header: gucs::text(&gucs::API_KEY_HEADER),
        model: gucs::text(&gucs::MODEL),
        dimensions: gucs::DIMENSIONS.get().max(0) as u32,
        timeout: Duration::from_millis(gucs::REQUEST_TIMEOUT_MS.get().max(1) as u64),
    })
}
