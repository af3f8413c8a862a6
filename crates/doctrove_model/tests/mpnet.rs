//! all-mpnet-base-v2, the second model `make deps` installs: an MPNet encoder (positions after
//! the padding id, a bias by relative position bucket in every layer), checked against
//! sentence-transformers' own tokens and vectors (`tests/fixtures/sentence_transformers_mpnet.json`,
//! made by bench/reference_st.py from the same folder; its last three texts hold the padding
//! token `<pad>` literally, which shifts the positions after it), and at int8 against float32.

#[allow(dead_code)]
mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::cosine;
use doctrove_model::SentenceModel;
use serde_json::Value;

/// Where `make deps` unpacks it (`DOCTROVE_MPNET_DIR` overrides).
fn mpnet_dir() -> PathBuf {
    std::env::var_os("DOCTROVE_MPNET_DIR").map_or_else(|| "/opt/doctrove_embed/all-mpnet-base-v2".into(), Into::into)
}

fn mpnet() -> &'static SentenceModel {
    static MODEL: OnceLock<SentenceModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        SentenceModel::load(&mpnet_dir())
            .unwrap_or_else(|e| panic!("cannot load {} (run `make deps`): {e}", mpnet_dir().display()))
    })
}

struct Reference {
    texts: Vec<String>,
    token_ids: Vec<Vec<u32>>,
    vectors: Vec<Vec<f32>>,
    versions: Value,
}

fn reference() -> Reference {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/sentence_transformers_mpnet.json"))
        .expect("the sentence-transformers fixture is JSON");
    let rows = |key: &str| fixture[key].as_array().unwrap().clone();
    Reference {
        texts: rows("texts").iter().map(|t| t.as_str().unwrap().to_string()).collect(),
        token_ids: rows("token_ids")
            .iter()
            .map(|ids| ids.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
            .collect(),
        vectors: rows("vectors")
            .iter()
            .map(|v| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
            .collect(),
        versions: fixture["versions"].clone(),
    }
}

#[test]
fn its_folder_says_768_dimensions_and_384_tokens() {
    assert_eq!((mpnet().dims(), mpnet().max_tokens()), (768, 384));
    // <s> hello world </s> in MPNet's vocabulary.
    assert_eq!(mpnet().token_ids("Hello World").unwrap(), vec![0, 7596, 2092, 2]);
}

#[test]
fn tokens_and_vectors_match_sentence_transformers() {
    let reference = reference();
    assert!(reference.texts.len() >= 20);
    for (i, text) in reference.texts.iter().enumerate() {
        assert_eq!(
            mpnet().token_ids(text).unwrap(),
            reference.token_ids[i],
            "token ids of text {i}"
        );
    }
    let together = mpnet().embed(&reference.texts).unwrap().vectors;
    let mut worst = f64::MAX;
    for (i, want) in reference.vectors.iter().enumerate() {
        let alone = mpnet()
            .embed(std::slice::from_ref(&reference.texts[i]))
            .unwrap()
            .vectors
            .remove(0);
        for (how, got) in [("together", &together[i]), ("alone", &alone)] {
            assert_eq!(got.len(), 768);
            let similarity = cosine(got, want);
            assert!(
                similarity >= 1.0 - 1e-4,
                "text {i} embedded {how}: cosine {similarity} with sentence-transformers"
            );
            worst = worst.min(similarity);
        }
    }
    println!(
        "all-mpnet-base-v2: lowest cosine with sentence-transformers {} over {} texts: {worst:.7}",
        reference.versions,
        reference.texts.len()
    );
}

#[test]
fn a_text_over_384_tokens_is_cut_to_its_first_384() {
    let sentence = "We study convergence of stochastic gradient descent on non-convex objectives. ";
    let (long, longer) = (sentence.repeat(40), sentence.repeat(80));
    assert_eq!(mpnet().token_ids(&long).unwrap().len(), 384);
    let v = mpnet().embed(&[long, longer]).unwrap().vectors;
    assert!(cosine(&v[0], &v[1]) > 0.999_999, "text past the limit changed the vector");
}

/// `low` (the model at a lower precision, or the CPU's refusal) within 0.999 cosine of float32's
/// vectors and of sentence-transformers' on every reference text, and not equal to float32's.
fn stays_within_0_999(precision: &str, low: Result<SentenceModel, Box<dyn std::error::Error + Send + Sync>>) {
    let Ok(low) = low else {
        println!("this CPU lacks the instructions of --precision {precision}: it is refused, nothing to compare");
        return;
    };
    let reference = reference();
    let one = [reference.texts[0].clone()];
    let before = low.embed(&one).unwrap().vectors;
    let (vectors, full) = (
        low.embed(&reference.texts).unwrap().vectors,
        mpnet().embed(&reference.texts).unwrap().vectors,
    );
    // The same pass again, in buffers a larger pass has just used: the same bits.
    assert_eq!(
        low.embed(&one).unwrap().vectors,
        before,
        "{precision}: a pass depends on the one before it"
    );
    let lowest = |other: &[Vec<f32>]| vectors.iter().zip(other).map(|(a, b)| cosine(a, b)).fold(f64::MAX, f64::min);
    let (worst, worst_st) = (lowest(&full), lowest(&reference.vectors));
    println!(
        "all-mpnet-base-v2 {precision} on {}: lowest cosine {worst:.6} with f32, {worst_st:.6} with sentence-transformers, over {} texts",
        low.instruction_set(),
        reference.texts.len()
    );
    assert!(
        worst >= 0.999 && worst_st >= 0.999,
        "{precision} vectors drift: {worst} with f32, {worst_st} with sentence-transformers"
    );
    assert!(worst < 1.0 - 1e-6, "the {precision} path was not taken");
}

#[test]
fn int8_vectors_stay_within_0_999_cosine_of_f32() {
    stays_within_0_999("int8", SentenceModel::load(&mpnet_dir()).unwrap().with_int8());
}

#[test]
fn bf16_vectors_stay_within_0_999_cosine_of_f32() {
    stays_within_0_999("bf16", SentenceModel::load(&mpnet_dir()).unwrap().with_bf16());
}
