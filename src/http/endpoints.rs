//! A job's endpoints, from the server's configuration: `default` is the `api_base_url`
//! settings (key, key header, `max_*_per_minute`); the others are defined in the file named by
//! the superuser-only `doctrove_embed.endpoints_file` (see `embed_core::endpoints`), which must
//! belong to the server's operating-system user and be readable by no one else, as key files
//! are. A job names endpoints and never holds a URL or a key, so no role can send a key to a
//! server of its own.

use embed_core::endpoints::{parse, EndpointSpec, DEFAULT_ENDPOINT, MAX_FILE_BYTES};
use embed_core::ApiConfig;
use pgrx::PgSqlErrorCode::*;

use crate::errors::UserError;
use crate::http::config::{current_config, key_from_file, read_private_file};
use crate::settings::gucs;

/// Most endpoints one job names.
pub const MAX_ENDPOINTS_PER_JOB: usize = 8;

/// An endpoint ready for requests: where they go, with which key, and its own limits.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub name: String,
    pub config: ApiConfig,
    pub max_tokens_per_minute: f64,
    pub max_requests_per_minute: f64,
}

/// The endpoints the file defines (none without the setting).
fn defined() -> Result<Vec<EndpointSpec>, UserError> {
    let path = gucs::text(&gucs::ENDPOINTS_FILE);
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let setting = "doctrove_embed.endpoints_file";
    let text = read_private_file(setting, &path, MAX_FILE_BYTES as u64 + 1, "the endpoints")?;
    parse(&text).map_err(|problem| {
        UserError::new(
            ERRCODE_CONFIG_FILE_ERROR,
            format!("{setting} \"{path}\" is not valid: {problem}"),
        )
        .hint("Fix the file (a JSON object: {\"name\": {\"url\": ..., \"key_file\": ...}}) and reload.")
    })
}

/// Checks that `names` are endpoints a job may name now (at most eight, each defined once).
pub fn check_names(names: &[String]) -> Result<(), UserError> {
    if names.is_empty() || names.len() > MAX_ENDPOINTS_PER_JOB {
        return Err(UserError::new(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("a job names 1 to {MAX_ENDPOINTS_PER_JOB} endpoints, not {}", names.len()),
        ));
    }
    let file = defined()?;
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(UserError::new(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("endpoint \"{name}\" is named twice"),
            ));
        }
        if name != DEFAULT_ENDPOINT && !file.iter().any(|e| &e.name == name) {
            return Err(undefined(name));
        }
    }
    Ok(())
}

fn undefined(name: &str) -> UserError {
    UserError::new(
        ERRCODE_UNDEFINED_OBJECT,
        format!("endpoint \"{}\" is not defined", name.escape_default()),
    )
    .hint("Endpoints other than default are defined in the file named by doctrove_embed.endpoints_file (by a superuser).")
}

/// The endpoints `names` name, for requests of `model` with `dimensions`.
pub fn resolve(names: &[String], model: &str, dimensions: u32) -> Result<Vec<Endpoint>, UserError> {
    let base = current_config()?;
    let file = if names.iter().any(|n| n != DEFAULT_ENDPOINT) {
        defined()?
    } else {
        Vec::new()
    };
    names
        .iter()
        .map(|name| {
            let mut config = base.clone();
            config.model = model.to_string();
            config.dimensions = dimensions;
            if name == DEFAULT_ENDPOINT {
                return Ok(Endpoint {
                    name: name.clone(),
                    config,
                    max_tokens_per_minute: f64::from(gucs::MAX_TOKENS_PER_MINUTE.get()),
                    max_requests_per_minute: f64::from(gucs::MAX_REQUESTS_PER_MINUTE.get()),
                });
            }
            let spec = file.iter().find(|e| &e.name == name).ok_or_else(|| undefined(name))?;
            config.base_url = spec.url.clone();
            config.api_key_header = spec.key_header.clone();
            config.api_key = match &spec.key_file {
                Some(path) => key_from_file(&format!("key_file of endpoint \"{name}\""), path)?,
                None => String::new(),
            };
            Ok(Endpoint {
                name: name.clone(),
                config,
                max_tokens_per_minute: spec.max_tokens_per_minute,
                max_requests_per_minute: spec.max_requests_per_minute,
            })
        })
        .collect()
}
