//! The Batch API client against the project's mock: a file goes up, a batch runs, its output
//! and error files come back line by line with each paper's exact vector; listings find a batch
//! by its metadata; validation failures, expiry and cancellation read as the API reports them.

use std::collections::BTreeMap;
use std::time::Duration;

use doctrove_mock::{vector_for, MockConfig, MockServer};
use embed_core::batch_client::{cancel_batch, create_batch, list_batches, read_file_lines, retrieve_batch, upload_batch_file};
use embed_core::batch_file::{parse_result_line, request_line, LineResult, MAX_RESULT_LINE_BYTES};
use embed_core::{ApiConfig, ApiError};

fn config(mock: &MockServer, path: &str) -> ApiConfig {
    ApiConfig {
        base_url: format!("{}/{path}v1", mock.url()),
        api_key: "sk-batch".into(),
        api_key_header: "Authorization".into(),
        model: "text-embedding-3-small".into(),
        dimensions: 4,
        timeout: Duration::from_secs(5),
    }
}

fn file_of(papers: &[(&str, &str)]) -> Vec<u8> {
    papers
        .iter()
        .map(|(id, text)| request_line(id, "text-embedding-3-small", text, 4))
        .collect::<String>()
        .into_bytes()
}

fn results(config: &ApiConfig, file: Option<&str>) -> Vec<LineResult> {
    let mut lines = Vec::new();
    if let Some(file) = file {
        read_file_lines(config, file, MAX_RESULT_LINE_BYTES, &mut |line| {
            lines.push(parse_result_line(line, Some(4)).unwrap());
            true
        })
        .unwrap();
    }
    lines
}

fn metadata(submission: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("doctrove_submission".to_string(), submission.to_string())])
}

#[test]
fn a_batch_runs_and_its_files_give_each_paper_its_vector_or_its_rejection() {
    let mock = MockServer::start("127.0.0.1:0", MockConfig::default()).unwrap();
    let config = config(&mock, "s=b1/poison=BAD/");
    let papers: Vec<(String, String)> = (0..40).map(|i| (i.to_string(), format!("Title: paper {i}"))).collect();
    let mut refs: Vec<(&str, &str)> = papers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    refs.push(("bad", "Title: BAD text"));
    let file = upload_batch_file(&config, "b.jsonl", &file_of(&refs)).unwrap();
    let created = create_batch(&config, &file, &metadata("sub-1")).unwrap();
    assert_eq!(created.status, "validating");
    let done = retrieve_batch(&config, &created.id).unwrap();
    assert_eq!(
        (done.status.as_str(), done.total, done.completed, done.failed),
        ("completed", 41, 40, 1)
    );
    let output = results(&config, done.output_file_id.as_deref());
    let ids: Vec<&str> = output.iter().map(LineResult::custom_id).collect();
    assert_ne!(
        ids,
        papers.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        "output order is shuffled"
    );
    for line in &output {
        let LineResult::Embedded { custom_id, vector, .. } = line else {
            panic!("{line:?}")
        };
        assert_eq!(vector, &vector_for(&format!("Title: paper {custom_id}"), 4));
    }
    let errors = results(&config, done.error_file_id.as_deref());
    assert!(
        matches!(&errors[..], [LineResult::Rejected { custom_id, .. }] if custom_id == "bad"),
        "{errors:?}"
    );
    let stats = mock.stats("b1");
    assert_eq!(
        (stats["batch_inputs"].as_u64(), stats["inputs"].as_u64()),
        (Some(40), Some(0))
    );
}

#[test]
fn a_listing_finds_batches_by_metadata_across_pages() {
    let mock = MockServer::start("127.0.0.1:0", MockConfig::default()).unwrap();
    let config = config(&mock, "s=b2/batch_delay=60000/");
    let file = upload_batch_file(&config, "b.jsonl", &file_of(&[("1", "Title: x")])).unwrap();
    let mut ids = Vec::new();
    for n in 0..120 {
        ids.push(create_batch(&config, &file, &metadata(&format!("sub-{n}"))).unwrap().id);
    }
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let (page, more) = list_batches(&config, after.as_deref()).unwrap();
        after = page.last().map(|b| b.id.clone());
        seen.extend(page);
        if !more {
            break;
        }
    }
    assert_eq!(seen.len(), 120);
    assert_eq!(seen[0].metadata["doctrove_submission"], "sub-119", "newest first");
    assert!(seen.iter().all(|b| b.status == "in_progress"));
    let cancelled = cancel_batch(&config, &ids[0]).unwrap();
    assert_eq!(cancelled.status, "cancelled");
}

#[test]
fn the_enqueued_token_limit_fails_validation_and_an_expired_batch_keeps_half() {
    let mock = MockServer::start("127.0.0.1:0", MockConfig::default()).unwrap();
    let limited = config(&mock, "s=b3/batch_delay=60000/batch_tokens=10/");
    let file = upload_batch_file(
        &limited,
        "b.jsonl",
        &file_of(&[("1", "Title: twelve chars"), ("2", "Title: more")]),
    )
    .unwrap();
    let first = create_batch(&limited, &file, &metadata("a")).unwrap();
    assert_eq!(retrieve_batch(&limited, &first.id).unwrap().status, "in_progress");
    let second = retrieve_batch(&limited, &create_batch(&limited, &file, &metadata("b")).unwrap().id).unwrap();
    assert_eq!(second.status, "failed");
    assert_eq!(second.error.unwrap().0, "token_limit_exceeded");

    let expiring = config(&mock, "s=b4/batch_expire=1/");
    let papers: Vec<(String, String)> = (0..10).map(|i| (i.to_string(), format!("Title: {i}"))).collect();
    let refs: Vec<(&str, &str)> = papers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let file = upload_batch_file(&expiring, "b.jsonl", &file_of(&refs)).unwrap();
    let batch = retrieve_batch(&expiring, &create_batch(&expiring, &file, &metadata("c")).unwrap().id).unwrap();
    assert_eq!((batch.status.as_str(), batch.completed, batch.failed), ("expired", 5, 5));
    let not_done = results(&expiring, batch.error_file_id.as_deref());
    assert!(not_done
        .iter()
        .all(|l| matches!(l, LineResult::NotDone { reason, .. } if reason == "batch_expired")));
}

#[test]
fn a_batch_of_more_than_50000_inputs_fails_validation() {
    let mock = MockServer::start("127.0.0.1:0", MockConfig::default()).unwrap();
    let config = config(&mock, "s=b5/");
    let papers: Vec<(String, String)> = (0..50_001).map(|i| (i.to_string(), format!("T{i}"))).collect();
    let refs: Vec<(&str, &str)> = papers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let file = upload_batch_file(&config, "b.jsonl", &file_of(&refs)).unwrap();
    let batch = retrieve_batch(&config, &create_batch(&config, &file, &metadata("big")).unwrap().id).unwrap();
    assert_eq!(
        (batch.status.as_str(), batch.error.map(|e| e.0)),
        ("failed", Some("too_many_inputs".to_string()))
    );
    assert_eq!(mock.stats("b5")["batch_inputs"], 0);
}

#[test]
fn a_line_over_the_cap_ends_the_reading_with_an_error_and_nothing_past_it_is_read() {
    let mock = MockServer::start("127.0.0.1:0", MockConfig { default_dims: 4 }).unwrap();
    let config = config(&mock, "s=cap/");
    let content = format!("{{\"a\": 1}}\n{}\n{{\"b\": 2}}\n", "x".repeat(10_000));
    let file = upload_batch_file(&config, "long.jsonl", content.as_bytes()).unwrap();
    let mut seen = Vec::new();
    let read = read_file_lines(&config, &file, 1_000, &mut |line| {
        seen.push(line.len());
        true
    });
    match read {
        Err(ApiError::Malformed(problem)) => assert!(problem.contains("longer than 1000 bytes"), "{problem}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen, vec![8], "only the line before the long one");
}
