//! The Batch API as OpenAI serves it for embeddings: `POST /files` (multipart, `purpose=batch`),
//! `GET /files/{id}/content`, `POST /batches`, `GET /batches/{id}`, `POST /batches/{id}/cancel`
//! and `GET /batches` (newest first, `limit` and `after`). Batches belong to the scope they
//! were created under, like an account's.
//!
//! A batch is `validating` when created, then `failed` (validation: more than 50,000 inputs, a
//! line that is not a request, or the scope's enqueued-token limit `batch_tokens=`) or
//! `in_progress`; after `batch_delay=` milliseconds it is `completed` (or `expired` with
//! `batch_expire=1`, half its requests done). A cancelled batch keeps the half it did. Output
//! lines come in shuffled order; a request holding a `poison=` text gets a 400 in the error
//! file, as a live request would.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http_endpoint::openai::{body_of, inputs_of};
use http_endpoint::{Reply, Request};
use serde_json::{json, Value};

use crate::embeddings::embeddings_body;
use crate::multipart;
use crate::options::Options;
use crate::stats::Stats;
use crate::vectors::vector_for;

/// Most embedding inputs in one batch.
pub const MAX_BATCH_INPUTS: usize = 50_000;

struct StoredFile {
    scope: String,
    purpose: String,
    filename: String,
    bytes: Vec<u8>,
    created_at: u64,
}

struct MockBatch {
    id: String,
    scope: String,
    options: Options,
    input_file_id: String,
    metadata: Value,
    created_at: u64,
    started: Instant,
    status: &'static str,
    /// Why validation fails, found when the batch is created and shown on its first retrieval.
    invalid: Option<(&'static str, String)>,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    total: u64,
    completed: u64,
    failed: u64,
    /// Tokens the batch holds, counted against the enqueued limit while it is open.
    tokens: u64,
    finished_at: Option<u64>,
    /// When a batch being cancelled (`cancelling`) becomes `cancelled`.
    cancel_at: Option<Instant>,
}

impl MockBatch {
    fn is_open(&self) -> bool {
        matches!(self.status, "validating" | "in_progress" | "finalizing" | "cancelling")
    }

    fn to_json(&self) -> Value {
        let errors = match (&self.invalid, self.status) {
            (Some((code, message)), "failed") => {
                json!({"object": "list", "data": [{"code": code, "message": message, "param": null, "line": null}]})
            }
            _ => Value::Null,
        };
        json!({
            "id": self.id, "object": "batch", "endpoint": "/v1/embeddings", "errors": errors,
            "input_file_id": self.input_file_id, "completion_window": "24h", "status": self.status,
            "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": self.created_at, "in_progress_at": null, "expires_at": self.created_at + 86_400,
            "completed_at": if self.status == "completed" { json!(self.finished_at) } else { Value::Null },
            "failed_at": if self.status == "failed" { json!(self.created_at) } else { Value::Null },
            "expired_at": if self.status == "expired" { json!(self.finished_at) } else { Value::Null },
            "cancelled_at": if self.status == "cancelled" { json!(self.finished_at) } else { Value::Null },
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
        })
    }
}

/// Every file and batch the mock holds.
#[derive(Default)]
pub struct BatchStore {
    files: HashMap<String, StoredFile>,
    /// In creation order.
    batches: Vec<MockBatch>,
    next_id: u64,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The mock's token count: one per four bytes, as for live requests.
fn tokens_of(text: &str) -> u64 {
    text.len().div_ceil(4) as u64
}

/// A number fixed by the text, for shuffling output lines the same way each run.
fn shuffle_key(text: &str) -> u32 {
    vector_for(text, 1)[0].to_bits()
}

/// The requests of an input file: (custom_id, body) per line, or the first problem.
fn requests_of(bytes: &[u8]) -> Result<Vec<(String, Value)>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the file is not UTF-8".to_string())?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            let request: Value = serde_json::from_str(line).map_err(|e| format!("line {} is not JSON: {e}", n + 1))?;
            let custom_id = request["custom_id"]
                .as_str()
                .ok_or(format!("line {} has no custom_id", n + 1))?;
            if request["url"] != "/v1/embeddings" || request["method"] != "POST" {
                return Err(format!("line {} is not a POST to /v1/embeddings", n + 1));
            }
            Ok((custom_id.to_string(), request["body"].clone()))
        })
        .collect()
}

impl BatchStore {
    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:06}", self.next_id)
    }

    fn add_file(&mut self, scope: &str, purpose: &str, filename: &str, bytes: Vec<u8>) -> String {
        let id = self.new_id("file-mock");
        let file = StoredFile {
            scope: scope.into(),
            purpose: purpose.into(),
            filename: filename.into(),
            bytes,
            created_at: unix_now(),
        };
        self.files.insert(id.clone(), file);
        id
    }

    fn file_json(&self, id: &str) -> Value {
        let f = &self.files[id];
        json!({"id": id, "object": "file", "bytes": f.bytes.len(), "created_at": f.created_at,
               "filename": f.filename, "purpose": f.purpose})
    }

    fn enqueued_tokens(&self, scope: &str) -> u64 {
        self.batches
            .iter()
            .filter(|b| b.scope == scope && b.is_open() && b.invalid.is_none())
            .map(|b| b.tokens)
            .sum()
    }

    /// Moves a batch on as time has passed: validation, then the end of its work.
    fn refresh(&mut self, index: usize, stats: &mut Stats) {
        let batch = &mut self.batches[index];
        if batch.status == "validating" {
            batch.status = if batch.invalid.is_some() { "failed" } else { "in_progress" };
            if batch.invalid.is_some() {
                stats.scope(&batch.scope).batches_failed += 1;
            }
        }
        if batch.status == "cancelling" {
            if batch.cancel_at.is_some_and(|at| Instant::now() >= at) {
                self.finish(index, "cancelled", stats);
            }
            return;
        }
        let due = batch.started.elapsed() >= Duration::from_millis(batch.options.batch_delay_ms);
        if batch.status == "in_progress" && due {
            let expire = batch.options.batch_expire;
            self.finish(index, if expire { "expired" } else { "completed" }, stats);
        }
    }

    /// Runs a batch's requests (all, or half when it expires or is cancelled) and writes its
    /// output and error files.
    fn finish(&mut self, index: usize, status: &'static str, stats: &mut Stats) {
        let (scope, options, input) = {
            let b = &self.batches[index];
            (b.scope.clone(), b.options.clone(), b.input_file_id.clone())
        };
        let requests = requests_of(&self.files[&input].bytes).unwrap_or_default();
        let done = if status == "completed" {
            requests.len()
        } else {
            requests.len().div_ceil(2)
        };
        let (mut output, mut errors) = (Vec::new(), Vec::new());
        let scope_stats = stats.scope(&scope);
        for (n, (custom_id, body)) in requests.iter().enumerate() {
            let line_id = format!("batch_req_{}_{n}", self.batches[index].id);
            if n >= done {
                let code = if status == "expired" {
                    "batch_expired"
                } else {
                    "batch_cancelled"
                };
                errors.push(json!({"id": line_id, "custom_id": custom_id, "response": null,
                                   "error": {"code": code, "message": "This request could not be executed before the batch ended."}}));
                continue;
            }
            let answer = match inputs_of(body) {
                Ok(inputs)
                    if options
                        .poison
                        .as_ref()
                        .is_some_and(|p| inputs.iter().any(|s| s.contains(p.as_str()))) =>
                {
                    Err(
                        json!({"error": {"message": "Invalid 'input': the text was rejected.", "type": "invalid_request_error", "param": null, "code": "invalid_input"}}),
                    )
                }
                Ok(inputs) => {
                    let dims = body["dimensions"]
                        .as_u64()
                        .map(|d| d as usize)
                        .or(options.dims)
                        .unwrap_or(1536);
                    let base64 = body["encoding_format"] == "base64";
                    let tokens: u64 = inputs.iter().map(|s| tokens_of(s)).sum();
                    scope_stats.batch_inputs += inputs.len() as u64;
                    scope_stats.batch_tokens += tokens;
                    scope_stats.batch_last_model = body["model"].as_str().map(str::to_string);
                    for text in &inputs {
                        *scope_stats.batch_per_text.entry(text.clone()).or_default() += 1;
                    }
                    Ok(embeddings_body(
                        body["model"].as_str().unwrap_or(""),
                        &inputs,
                        dims,
                        base64,
                        false,
                        tokens,
                    ))
                }
                Err(reply) => Err(serde_json::from_slice(&reply.body).unwrap_or(Value::Null)),
            };
            match answer {
                Ok(body) => output.push(json!({"id": line_id, "custom_id": custom_id, "error": null,
                                               "response": {"status_code": 200, "request_id": line_id, "body": body}})),
                Err(body) => errors.push(json!({"id": line_id, "custom_id": custom_id, "error": null,
                                                "response": {"status_code": 400, "request_id": line_id, "body": body}})),
            }
        }
        output.sort_by_key(|line| shuffle_key(line["custom_id"].as_str().unwrap_or("")));
        let to_file = |lines: &[Value]| lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
        let mut output_bytes = to_file(&output);
        if options.batch_bad_line && !output.is_empty() {
            output_bytes.extend_from_slice(b"this line is not a result\n");
        }
        let (completed, failed) = (output.len() as u64, errors.len() as u64);
        let output_id = (!output.is_empty()).then(|| self.add_file(&scope, "batch_output", "batch_output.jsonl", output_bytes));
        let error_id =
            (!errors.is_empty()).then(|| self.add_file(&scope, "batch_output", "batch_errors.jsonl", to_file(&errors)));
        let batch = &mut self.batches[index];
        batch.status = status;
        batch.output_file_id = output_id;
        batch.error_file_id = error_id;
        batch.completed = completed;
        batch.failed = failed;
        batch.finished_at = Some(unix_now());
    }

    fn find(&self, scope: &str, id: &str) -> Option<usize> {
        self.batches.iter().position(|b| b.id == id && b.scope == scope)
    }
}

fn not_found(what: &str, id: &str) -> Reply {
    Reply::api_error(404, "not_found", &format!("No {what} found with id '{id}'."))
}

/// `POST /files`.
fn upload(store: &mut BatchStore, stats: &mut Stats, options: &Options, request: &Request) -> Reply {
    let parts = match multipart::parse(request.header("content-type").unwrap_or(""), &request.body) {
        Ok(parts) => parts,
        Err(problem) => return Reply::api_error(400, "invalid_request", &problem),
    };
    let field = |name: &str| parts.iter().find(|p| p.name == name);
    let purpose = field("purpose")
        .map(|p| String::from_utf8_lossy(&p.data).to_string())
        .unwrap_or_default();
    if purpose != "batch" {
        return Reply::api_error(400, "invalid_request", "'purpose' must be 'batch' here.");
    }
    let Some(file) = field("file") else {
        return Reply::api_error(400, "invalid_request", "No 'file' field.");
    };
    let filename = file.filename.clone().unwrap_or_else(|| "upload.jsonl".into());
    let id = store.add_file(&options.scope, &purpose, &filename, file.data.clone());
    stats.scope(&options.scope).batch_files_uploaded += 1;
    Reply::json(200, &store.file_json(&id))
}

/// `POST /batches`.
fn create(store: &mut BatchStore, stats: &mut Stats, options: &Options, raw: &[u8]) -> Reply {
    let body = match body_of(raw) {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    if body["endpoint"] != "/v1/embeddings" || body["completion_window"] != "24h" {
        return Reply::api_error(
            400,
            "invalid_request",
            "Only endpoint /v1/embeddings with completion_window 24h is served here.",
        );
    }
    let Some(input_file_id) = body["input_file_id"].as_str() else {
        return Reply::api_error(400, "invalid_request", "Missing 'input_file_id'.");
    };
    let Some(file) = store.files.get(input_file_id).filter(|f| f.scope == options.scope) else {
        return not_found("file", input_file_id);
    };
    let (requests, invalid) = match requests_of(&file.bytes) {
        Ok(requests) => (requests, None),
        Err(problem) => (Vec::new(), Some(("invalid_json_line", problem))),
    };
    let inputs: Vec<String> = requests
        .iter()
        .flat_map(|(_, body)| inputs_of(body).unwrap_or_default())
        .collect();
    let tokens: u64 = inputs.iter().map(|s| tokens_of(s)).sum();
    let enqueued = store.enqueued_tokens(&options.scope);
    let invalid = invalid
        .or_else(|| {
            (inputs.len() > MAX_BATCH_INPUTS).then(|| {
                (
                    "too_many_inputs",
                    format!(
                        "The batch holds {} embedding inputs; at most {MAX_BATCH_INPUTS} are allowed.",
                        inputs.len()
                    ),
                )
            })
        })
        .or_else(|| {
            let limit = options.batch_enqueued_tokens;
            (limit > 0 && enqueued + tokens > limit).then(|| {
                (
                    "token_limit_exceeded",
                    format!(
                        "Enqueued token limit reached for {} in organization org-mock. Limit: {limit} enqueued tokens. \
                     Please try again once some in_progress batches have been completed.",
                        requests.first().and_then(|(_, b)| b["model"].as_str()).unwrap_or("the model")
                    ),
                )
            })
        });
    let id = store.new_id("batch_mock");
    let batch = MockBatch {
        id: id.clone(),
        scope: options.scope.clone(),
        options: options.clone(),
        input_file_id: input_file_id.to_string(),
        metadata: if body["metadata"].is_object() {
            body["metadata"].clone()
        } else {
            Value::Null
        },
        created_at: unix_now(),
        started: Instant::now(),
        status: "validating",
        invalid,
        output_file_id: None,
        error_file_id: None,
        total: requests.len() as u64,
        completed: 0,
        failed: 0,
        tokens,
        finished_at: None,
        cancel_at: None,
    };
    let answer = batch.to_json();
    store.batches.push(batch);
    stats.scope(&options.scope).batches_created += 1;
    Reply::json(200, &answer)
}

/// `GET /batches`: newest first, `limit` (1 to 100, default 20) after the id `after`.
fn list(store: &mut BatchStore, stats: &mut Stats, options: &Options, query: &str) -> Reply {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    let limit = param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let ours: Vec<usize> = (0..store.batches.len())
        .rev()
        .filter(|&i| store.batches[i].scope == options.scope)
        .collect();
    let start = match param("after") {
        Some(after) => ours
            .iter()
            .position(|&i| store.batches[i].id == after)
            .map_or(ours.len(), |p| p + 1),
        None => 0,
    };
    let page: Vec<usize> = ours.iter().skip(start).take(limit).copied().collect();
    for &i in &page {
        store.refresh(i, stats);
    }
    stats.scope(&options.scope).batch_lists += 1;
    let data: Vec<Value> = page.iter().map(|&i| store.batches[i].to_json()).collect();
    Reply::json(
        200,
        &json!({
            "object": "list", "data": data,
            "first_id": page.first().map(|&i| store.batches[i].id.clone()),
            "last_id": page.last().map(|&i| store.batches[i].id.clone()),
            "has_more": start + page.len() < ours.len(),
        }),
    )
}

/// Answers a request under `.../files` or `.../batches`, or `None` when it is not one.
pub fn handle(store: &mut BatchStore, stats: &mut Stats, options: &Options, request: &Request) -> Option<Reply> {
    let path = request.path();
    let method = request.method.as_str();
    let query = request.url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let tail_after = |marker: &str| path.rfind(marker).map(|at| &path[at + marker.len()..]);
    if options.no_batch_api && (tail_after("/files").is_some() || tail_after("/batches").is_some()) {
        return Some(Reply::api_error(404, "not_found", &format!("no route for {path}")));
    }
    if let Some(tail) = tail_after("/files") {
        return Some(match (method, tail) {
            ("POST", "") => upload(store, stats, options, request),
            ("GET", t) if t.ends_with("/content") => {
                let id = t.trim_start_matches('/').trim_end_matches("/content");
                match store.files.get(id).filter(|f| f.scope == options.scope) {
                    Some(file) => {
                        stats.scope(&options.scope).batch_files_downloaded += 1;
                        Reply::new(200, file.bytes.clone()).with_header("Content-Type", "application/octet-stream")
                    }
                    None => not_found("file", id),
                }
            }
            ("DELETE", t) if !t.trim_start_matches('/').contains('/') => {
                let id = t.trim_start_matches('/');
                match store.files.get(id).filter(|f| f.scope == options.scope) {
                    Some(_) if options.delete_fail => {
                        stats.scope(&options.scope).batch_file_deletes_failed += 1;
                        Reply::api_error(500, "server_error", "The file could not be deleted.")
                    }
                    Some(_) => {
                        store.files.remove(id);
                        stats.scope(&options.scope).batch_files_deleted += 1;
                        Reply::json(200, &json!({"id": id, "object": "file", "deleted": true}))
                    }
                    None => not_found("file", id),
                }
            }
            _ => Reply::api_error(404, "not_found", &format!("no route for {path}")),
        });
    }
    let tail = tail_after("/batches")?;
    Some(match (method, tail) {
        ("POST", "") => create(store, stats, options, &request.body),
        ("GET", "") => list(store, stats, options, query),
        (_, t) => {
            let (id, cancel) = match t.trim_start_matches('/').split_once('/') {
                Some((id, "cancel")) => (id, true),
                Some(_) => return Some(Reply::api_error(404, "not_found", &format!("no route for {path}"))),
                None => (t.trim_start_matches('/'), false),
            };
            let Some(index) = store.find(&options.scope, id) else {
                return Some(not_found("batch", id));
            };
            store.refresh(index, stats);
            match (method, cancel) {
                ("POST", true) => {
                    if store.batches[index].is_open() && store.batches[index].status != "cancelling" {
                        if options.cancel_delay_ms > 0 {
                            let batch = &mut store.batches[index];
                            batch.status = "cancelling";
                            batch.cancel_at = Some(Instant::now() + Duration::from_millis(options.cancel_delay_ms));
                        } else {
                            store.finish(index, "cancelled", stats);
                        }
                        stats.scope(&options.scope).batches_cancelled += 1;
                    }
                    Reply::json(200, &store.batches[index].to_json())
                }
                ("GET", false) => Reply::json(200, &store.batches[index].to_json()),
                _ => Reply::api_error(404, "not_found", &format!("no route for {path}")),
            }
        }
    })
}
