//! One server, several models: each `--model` folder served under its name with the pooling and
//! normalisation its folder says (checked against the independent reference's mean and CLS
//! vectors), `GET /v1/models` listing them, a request's `model` picking one, an unknown name
//! answered 404 `model_not_found`; a folder the server cannot serve refused at start, by name.

#[allow(dead_code)]
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cosine;
use common::server::Running;
use serde_json::{json, Value};

/// A copy of the default model's folder in which `files` (path, JSON) differ: every other file
/// is a link to the original. Removed on drop.
struct Variant(PathBuf);

impl Variant {
    fn new(name: &str, files: &[(&str, Value)]) -> Variant {
        let original = doctrove_model::model_dir_from_env();
        let dir = std::env::temp_dir().join(format!("doctrove_model_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        link_tree(&original, &dir);
        for (file, value) in files {
            let path = dir.join(file);
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, value.to_string()).unwrap();
        }
        Variant(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Variant {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `to` as a tree of folders whose files are links to `from`'s.
fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            link_tree(&entry.path(), &target);
        } else {
            std::os::unix::fs::symlink(entry.path(), target).unwrap();
        }
    }
}

fn floats(value: &Value) -> Vec<f32> {
    value.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/reference.json")).unwrap()
}

/// The vectors `model` gives for the reference's texts, and the model name the answer reports.
fn embed(server: &Running, model: &str) -> (Vec<Vec<f32>>, String) {
    let body = json!({"model": model, "input": fixture()["texts"]}).to_string();
    let answer = server.request("POST", "/v1/embeddings", &body);
    let vectors = answer["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no vectors from {model}: {answer}"))
        .iter()
        .map(|item| floats(&item["embedding"]))
        .collect();
    (vectors, answer["model"].as_str().unwrap_or("").to_string())
}

fn pooling_config(mean: bool) -> Value {
    json!({"word_embedding_dimension": 384, "pooling_mode_cls_token": !mean, "pooling_mode_mean_tokens": mean,
           "pooling_mode_max_tokens": false, "pooling_mode_mean_sqrt_len_tokens": false})
}

#[test]
fn each_model_is_served_under_its_name_with_its_own_pooling() {
    let cls = Variant::new("cls", &[("1_Pooling/config.json", pooling_config(false))]);
    let unnormalised = Variant::new(
        "unnormalised",
        &[(
            "modules.json",
            json!([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]),
        )],
    );
    let cls_model = format!("minilm-cls={}", cls.path());
    let raw_model = format!("minilm-raw={}", unnormalised.path());
    let server = Running::start(&["--model", &cls_model, "--model", &raw_model], None);
    for name in ["all-MiniLM-L6-v2 (384", "minilm-cls (384", "minilm-raw (384"] {
        assert!(server.banner.contains(name), "{}", server.banner);
    }

    let listed = server.request("GET", "/v1/models", "");
    let listed: Vec<(String, u64)> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_string(), m["dimensions"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            ("all-MiniLM-L6-v2".to_string(), 384),
            ("minilm-cls".to_string(), 384),
            ("minilm-raw".to_string(), 384)
        ]
    );

    let reference = fixture();
    let lowest = |got: &[Vec<f32>], key: &str| {
        got.iter()
            .zip(reference[key].as_array().unwrap())
            .map(|(a, b)| cosine(a, &floats(b)))
            .fold(f64::INFINITY, f64::min)
    };
    // The model's own folder: mean pooling, normalised (its owner/name form picks it too).
    let (mean, reported) = embed(&server, "sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(reported, "all-MiniLM-L6-v2");
    assert!(lowest(&mean, "vectors") >= 1.0 - 1e-4, "mean: {}", lowest(&mean, "vectors"));
    // CLS pooling: the first token's vector, as the reference computes it.
    let (first_token, reported) = embed(&server, "minilm-cls");
    assert_eq!(reported, "minilm-cls");
    assert!(
        lowest(&first_token, "cls_vectors") >= 1.0 - 1e-4,
        "cls: {}",
        lowest(&first_token, "cls_vectors")
    );
    assert!(lowest(&first_token, "vectors") < 0.99, "CLS vectors equal the mean's");
    // No Normalize module: the mean's direction, at its own length.
    let (raw, _) = embed(&server, "minilm-raw");
    assert!(lowest(&raw, "vectors") >= 1.0 - 1e-4, "raw: {}", lowest(&raw, "vectors"));
    for vector in &raw {
        let norm = vector.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() > 0.01, "an unnormalised vector has length {norm}");
    }

    let unknown = server.request(
        "POST",
        "/v1/embeddings",
        &json!({"model": "bge-small", "input": "x"}).to_string(),
    );
    assert_eq!(unknown["error"]["code"], "model_not_found", "{unknown}");
    let message = unknown["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'bge-small'") && message.contains("'minilm-cls'"),
        "{message}"
    );
}

/// Whether the server, started with `args`, exited successfully within 30 s (one that starts
/// serving is killed then: not refused), and its stderr.
fn refused(args: &[&str]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_doctrove-model"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status.is_none_or(|s| s.success()), stderr)
}

#[test]
fn a_folder_the_server_cannot_serve_is_refused_at_start_with_what_it_lacks() {
    let roberta = Variant::new(
        "roberta",
        &[("config.json", json!({"model_type": "roberta", "hidden_size": 768}))],
    );
    let (started, stderr) = refused(&["--model", &format!("roberta={}", roberta.path())]);
    assert!(!started && stderr.contains("model_type 'roberta' is not served"), "{stderr}");

    let max = Variant::new(
        "max",
        &[(
            "1_Pooling/config.json",
            json!({"pooling_mode_mean_tokens": false, "pooling_mode_max_tokens": true}),
        )],
    );
    let (started, stderr) = refused(&["--model", &format!("max={}", max.path())]);
    assert!(!started && stderr.contains("pooling_mode_max_tokens"), "{stderr}");

    let default = doctrove_model::model_dir_from_env();
    let twice = format!("all-MiniLM-L6-v2={}", default.display());
    let (started, stderr) = refused(&["--model", default.to_str().unwrap(), "--model", &twice]);
    assert!(
        !started && stderr.contains("two models are named 'all-MiniLM-L6-v2'"),
        "{stderr}"
    );
    // A name with an owner part would shadow, or be shadowed by, the name after it.
    let owned = format!("org/all-MiniLM-L6-v2={}", default.display());
    let (started, stderr) = refused(&["--model", default.to_str().unwrap(), "--model", &owned]);
    assert!(!started && stderr.contains("without spaces or '/'"), "{stderr}");
    let (started, stderr) = refused(&["--model", "empty="]);
    assert!(!started && stderr.contains("no folder after '='"), "{stderr}");
}
