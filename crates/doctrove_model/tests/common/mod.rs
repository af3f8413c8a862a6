//! The model, loaded once per test binary from where `make deps` put it.

pub mod server;

use std::sync::OnceLock;

use doctrove_model::SentenceModel;

pub fn model() -> &'static SentenceModel {
    static MODEL: OnceLock<SentenceModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = doctrove_model::model_dir_from_env();
        SentenceModel::load(&dir)
            .unwrap_or_else(|e| panic!("cannot load the model from {} (run `make deps`): {e}", dir.display()))
    })
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}
