//! The server binary picks its matrix kernels from the CPU's features and says which: its
//! startup line and `GET /health` name the kernel and instruction set, the default never runs a
//! fallback on a CPU with AVX2 or AVX-512, `--kernel openblas` gets OpenBLAS's kernels for this
//! CPU rather than its SSE3 fallback, and a core type the user set is kept. Each server's
//! vectors are checked against sentence-transformers'.

// Its `cosine` and the server binary: these tests load the model in the server they start.
#[allow(dead_code)]
mod common;

use common::cosine;
use common::server::Running;
use serde_json::{json, Value};

/// The best instruction set this CPU has, found here independently of the server.
fn best_instruction_set() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "avx2";
        }
    }
    "baseline"
}

impl Running {
    /// `/health`'s kernel and instruction set.
    fn kernel(&self) -> (String, String) {
        let health = self.request("GET", "/health", "");
        (
            health["kernel"].as_str().unwrap().into(),
            health["instruction_set"].as_str().unwrap().into(),
        )
    }

    /// The server's vectors for sentence-transformers' fixture texts against its vectors: the
    /// first text alone (a short pass: the packed kernel, whichever is the default) and all
    /// of them in one request (passes of hundreds of tokens: OpenBLAS, where it runs them).
    fn check_vectors(&self) {
        let fixture: Value = serde_json::from_str(include_str!("fixtures/sentence_transformers.json")).unwrap();
        let as_floats = |v: &Value| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect::<Vec<_>>()
        };
        for input in [fixture["texts"][0].clone(), fixture["texts"].clone()] {
            let body = json!({"model": "all-MiniLM-L6-v2", "input": input}).to_string();
            let answer = self.request("POST", "/v1/embeddings", &body);
            let data = answer["data"].as_array().unwrap();
            assert_eq!(data.len(), input.as_array().map_or(1, Vec::len));
            for item in data {
                let i = item["index"].as_u64().unwrap() as usize;
                let similarity = cosine(&as_floats(&item["embedding"]), &as_floats(&fixture["vectors"][i]));
                assert!(
                    similarity >= 1.0 - 1e-4,
                    "{}: text {i}, cosine {similarity} with sentence-transformers",
                    self.banner.trim()
                );
            }
        }
    }
}

#[test]
fn the_default_kernel_uses_the_best_instruction_set_of_this_cpu_and_says_so() {
    let server = Running::start(&[], None);
    let (kernel, instruction_set) = server.kernel();
    // The packed kernel, and OpenBLAS for passes of many rows where it runs this CPU's kernels
    // (make deps installs it).
    assert!(kernel.starts_with("packed"), "{kernel}");
    assert_eq!(
        instruction_set,
        best_instruction_set(),
        "the server runs a fallback kernel on a CPU with {}",
        best_instruction_set()
    );
    if best_instruction_set() != "baseline" {
        assert!(
            kernel.contains(", openblas "),
            "OpenBLAS is not used for large passes: {kernel}"
        );
    }
    assert!(
        server.banner.contains(&format!("kernel {kernel} on {instruction_set}")),
        "the startup line does not name the kernel: {}",
        server.banner
    );
    server.check_vectors();

    // With a fallback core type forced on it, OpenBLAS is left out of the default.
    let forced = Running::start(&[], Some("PRESCOTT"));
    assert_eq!(forced.kernel(), ("packed".to_string(), best_instruction_set().to_string()));
    let packed = Running::start(&["--kernel", "packed"], None);
    assert_eq!(packed.kernel(), ("packed".to_string(), best_instruction_set().to_string()));
    packed.check_vectors();
}

#[test]
fn openblas_gets_this_cpus_kernels_unless_the_user_chose_a_core_type() {
    let chosen = Running::start(&["--kernel", "openblas"], None);
    let (kernel, instruction_set) = chosen.kernel();
    assert!(kernel.starts_with("openblas "), "{kernel}");
    let wanted = match best_instruction_set() {
        "baseline" => instruction_set.as_str(), // nothing better to ask OpenBLAS for
        best => best,
    };
    assert_eq!(
        instruction_set,
        wanted,
        "OpenBLAS runs {kernel} on a CPU with {}",
        best_instruction_set()
    );
    chosen.check_vectors();

    let forced = Running::start(&["--kernel", "openblas"], Some("PRESCOTT"));
    assert_eq!(forced.kernel(), ("openblas Prescott".to_string(), "sse3".to_string()));
    forced.check_vectors();
}
