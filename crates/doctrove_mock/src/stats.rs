//! Counters per scope: what the mock was asked and answered, read back by tests over HTTP.

use std::collections::HashMap;

use serde_json::{json, Value};

/// Everything the mock saw for one scope.
#[derive(Debug, Default)]
pub struct ScopeStats {
    /// Requests to `/embeddings`, answered or not.
    pub requests: u64,
    /// Requests answered 200 with vectors.
    pub answered: u64,
    /// Requests answered with an error status.
    pub failed: u64,
    /// Inputs in answered requests.
    pub inputs: u64,
    /// Tokens (the mock counts a token per 4 bytes) in answered requests.
    pub tokens: u64,
    /// Requests answered 429 because the scope's tokens or requests per minute ran out.
    pub rate_limited: u64,
    /// Largest number of inputs in one request.
    pub max_inputs_per_request: u64,
    /// How many answered requests held each input text.
    pub per_text: HashMap<String, u32>,
    /// The query string of the last request (without `?`).
    pub last_query: Option<String>,
    /// The authentication header of the last request, as `name: value`.
    pub last_auth: Option<String>,
    /// Requests that carried `Authorization` or `api-key`.
    pub requests_with_key: u64,
    /// Fields of the last request body.
    pub last_model: Option<String>,
    pub last_dimensions: Option<u64>,
    pub last_encoding_format: Option<String>,
    /// Batch API: files uploaded and downloaded, batches created, failed validation, cancelled;
    /// listings asked for.
    pub batch_files_uploaded: u64,
    pub batch_files_downloaded: u64,
    pub batch_files_deleted: u64,
    /// File deletions answered 500 (`delete_fail=1`).
    pub batch_file_deletes_failed: u64,
    pub batches_created: u64,
    pub batches_failed: u64,
    pub batches_cancelled: u64,
    pub batch_lists: u64,
    /// Inputs and tokens the Batch API answered (paid at the batch price).
    pub batch_inputs: u64,
    pub batch_tokens: u64,
    /// How many batch requests answered each input text.
    pub batch_per_text: HashMap<String, u32>,
    /// The model the last batch request answered asked for.
    pub batch_last_model: Option<String>,
}

impl ScopeStats {
    /// The counters as JSON, the shape `GET /stats/SCOPE` answers.
    pub fn to_json(&self) -> Value {
        let duplicates: u64 = self.per_text.values().filter(|n| **n > 1).map(|n| u64::from(*n - 1)).sum();
        let batch_duplicates: u64 = self
            .batch_per_text
            .values()
            .filter(|n| **n > 1)
            .map(|n| u64::from(*n - 1))
            .sum();
        // Texts paid for more than once in all: live and batch together.
        let mut all = self.per_text.clone();
        for (text, n) in &self.batch_per_text {
            *all.entry(text.clone()).or_default() += n;
        }
        let paid_twice: u64 = all.values().filter(|n| **n > 1).map(|n| u64::from(*n - 1)).sum();
        json!({
            "requests": self.requests,
            "answered": self.answered,
            "failed": self.failed,
            "inputs": self.inputs,
            "tokens": self.tokens,
            "rate_limited": self.rate_limited,
            "distinct_inputs": self.per_text.len(),
            "duplicate_inputs": duplicates,
            "max_inputs_per_request": self.max_inputs_per_request,
            "last_query": self.last_query,
            "last_auth": self.last_auth,
            "requests_with_key": self.requests_with_key,
            "last_model": self.last_model,
            "last_dimensions": self.last_dimensions,
            "last_encoding_format": self.last_encoding_format,
            "batch_files_uploaded": self.batch_files_uploaded,
            "batch_files_downloaded": self.batch_files_downloaded,
            "batch_files_deleted": self.batch_files_deleted,
            "batch_file_deletes_failed": self.batch_file_deletes_failed,
            "batches_created": self.batches_created,
            "batches_failed": self.batches_failed,
            "batches_cancelled": self.batches_cancelled,
            "batch_lists": self.batch_lists,
            "batch_inputs": self.batch_inputs,
            "batch_tokens": self.batch_tokens,
            "batch_last_model": self.batch_last_model,
            "batch_distinct_inputs": self.batch_per_text.len(),
            "batch_duplicate_inputs": batch_duplicates,
            "distinct_inputs_all": all.len(),
            "paid_twice": paid_twice,
        })
    }
}

/// All scopes' counters.
#[derive(Debug, Default)]
pub struct Stats {
    scopes: HashMap<String, ScopeStats>,
}

impl Stats {
    pub fn scope(&mut self, name: &str) -> &mut ScopeStats {
        self.scopes.entry(name.to_string()).or_default()
    }

    pub fn json_of(&self, name: &str) -> Value {
        self.scopes
            .get(name)
            .map(ScopeStats::to_json)
            .unwrap_or_else(|| ScopeStats::default().to_json())
    }

    pub fn reset(&mut self, name: &str) {
        self.scopes.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_count_every_extra_send_of_a_text() {
        let mut stats = Stats::default();
        let s = stats.scope("a");
        s.per_text.insert("x".into(), 3);
        s.per_text.insert("y".into(), 1);
        let json = stats.json_of("a");
        assert_eq!(json["duplicate_inputs"], 2);
        assert_eq!(json["distinct_inputs"], 2);
    }

    #[test]
    fn an_unknown_scope_reads_as_zeros() {
        assert_eq!(Stats::default().json_of("none")["requests"], 0);
    }
}
