//! `doctrove-mock`'s command line: `--help` lists every option, a non-loopback `--listen` is
//! refused without `--api-key`, and with a key (from the flag or `DOCTROVE_MOCK_API_KEY`) every
//! request but `GET /health` needs it.

mod common;

use std::process::Command;

use common::{embed, request, MockProcess};

#[test]
fn help_lists_every_option() {
    let output = Command::new(env!("CARGO_BIN_EXE_doctrove-mock"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--dims",
        "--api-key",
        "--max-body-bytes",
        "--max-connections",
        "--max-queue",
        "DOCTROVE_MOCK_API_KEY",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}:\n{help}");
    }
}

#[test]
fn a_non_loopback_address_needs_an_api_key() {
    let output = Command::new(env!("CARGO_BIN_EXE_doctrove-mock"))
        .args(["--listen", "0.0.0.0:0"])
        .env_remove("DOCTROVE_MOCK_API_KEY")
        .output()
        .expect("run the mock");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback"));
}

#[test]
fn with_a_key_from_the_environment_the_mock_listens_beyond_loopback_and_requires_it() {
    let mock = MockProcess::start(
        &["--listen", "0.0.0.0:0", "--dims", "3"],
        &[("DOCTROVE_MOCK_API_KEY", "env-key")],
    );
    assert_eq!(embed(mock.addr, "/v1/embeddings", "").status, 401);
    let served = embed(mock.addr, "/v1/embeddings", "Authorization: Bearer env-key\r\n");
    assert_eq!(served.status, 200);
    assert_eq!(served.body["data"][0]["embedding"].as_array().map(Vec::len), Some(3));
    assert_eq!(request(mock.addr, "GET", "/health", "", "").status, 200);
}

#[test]
fn the_body_limit_flag_is_enforced() {
    let mock = MockProcess::start(&["--listen", "127.0.0.1:0", "--max-body-bytes", "100"], &[]);
    let big = format!(r#"{{"model": "m", "input": "{}"}}"#, "x".repeat(200));
    let answer = request(mock.addr, "POST", "/v1/embeddings", "", &big);
    assert_eq!(
        (answer.status, answer.body["error"]["code"].as_str()),
        (413, Some("request_too_large"))
    );
}
