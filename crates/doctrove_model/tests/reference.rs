//! The server's vectors against sentence-transformers: the similarities its documentation
//! publishes for this model, a known token sequence, and the reference vectors of an
//! independent numpy implementation (`reference/reference_vectors.py`, its output committed in
//! `tests/fixtures/reference.json`).

mod common;

use common::{cosine, model};
use doctrove_model::openblas::OpenBlas;
use doctrove_model::{InstructionSet, Kernel, SentenceModel};
use serde_json::Value;

fn embed(texts: &[&str]) -> Vec<Vec<f32>> {
    let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    model().embed(&texts).unwrap().vectors
}

#[test]
fn the_similarities_sentence_transformers_publishes_for_this_model_are_reproduced() {
    // sentence-transformers' usage documentation, for all-MiniLM-L6-v2:
    // tensor([[1.0000, 0.6660, 0.1046], [0.6660, 1.0000, 0.1411], [0.1046, 0.1411, 1.0000]])
    let v = embed(&[
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
    ]);
    let published = [(0, 1, 0.6660), (0, 2, 0.1046), (1, 2, 0.1411)];
    for (a, b, expected) in published {
        let got = cosine(&v[a], &v[b]);
        assert!(
            (got - expected).abs() < 0.0001,
            "similarity of {a} and {b}: {got:.5}, published {expected}"
        );
    }
}

#[test]
fn vectors_have_384_dimensions_and_unit_length() {
    for v in embed(&["a", "Graph neural networks for molecules."]) {
        assert_eq!(v.len(), 384);
        let norm: f64 = v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[test]
fn bert_uncased_token_ids_of_a_known_text() {
    // [CLS] hello world [SEP] in BERT's uncased vocabulary.
    assert_eq!(model().token_ids("Hello World").unwrap(), vec![101, 7592, 2088, 102]);
}

#[test]
fn vectors_match_the_independent_reference_implementation() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/reference.json")).expect("the reference fixture is JSON");
    let texts: Vec<String> = fixture["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let embedded = model().embed(&texts).unwrap();
    let mut worst = f64::MAX;
    for (i, text) in texts.iter().enumerate() {
        let ids: Vec<u32> = fixture["token_ids"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(model().token_ids(text).unwrap(), ids, "token ids of text {i}");
        let reference: Vec<f32> = fixture["vectors"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let similarity = cosine(&embedded.vectors[i], &reference);
        assert!(similarity >= 0.999, "text {i}: cosine {similarity} with the reference");
        worst = worst.min(similarity);
    }
    let reference_tokens: usize = fixture["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_array().unwrap().len())
        .sum();
    assert_eq!(embedded.tokens, reference_tokens);
    println!("lowest cosine with the reference over {} texts: {worst:.7}", texts.len());
}

#[test]
fn a_text_over_256_tokens_is_cut_to_its_first_256_not_rejected() {
    let sentence = "We study convergence of stochastic gradient descent on non-convex objectives. ";
    let long = sentence.repeat(40);
    let longer = sentence.repeat(80);
    assert_eq!(model().token_ids(&long).unwrap().len(), 256);
    let v = embed(&[&long, &longer]);
    assert!(cosine(&v[0], &v[1]) > 0.999_999, "text past the limit changed the vector");
}

#[test]
fn a_vector_does_not_depend_on_its_batch_or_its_padding() {
    let alone = embed(&["Superconductivity in twisted bilayer graphene."]);
    let batched = embed(&[
        "A much longer text about the thermodynamics of black holes and the information paradox, with many words.",
        "Superconductivity in twisted bilayer graphene.",
        "x",
    ]);
    assert!(cosine(&alone[0], &batched[1]) > 0.999_999);
}

#[test]
fn a_pass_gives_the_same_bits_after_a_larger_one_reused_its_buffers() {
    let dir = doctrove_model::model_dir_from_env();
    let model = doctrove_model::SentenceModel::load(&dir).unwrap().with_threads(1);
    let one = ["Superconductivity in twisted bilayer graphene.".to_string()];
    let before = model.embed(&one).unwrap().vectors;
    let larger: Vec<String> = (0..30)
        .map(|i| format!("Paper {i}: {}", "long words ".repeat(i * 3)))
        .collect();
    model.embed(&larger).unwrap();
    assert_eq!(model.embed(&one).unwrap().vectors, before);
}

#[test]
fn passes_run_side_by_side_give_the_vectors_of_one_thread() {
    let texts: Vec<String> = (0..40)
        .map(|i| format!("Paper {i} on topic {} with {} words.", i % 7, "many ".repeat(i)))
        .collect();
    let dir = doctrove_model::model_dir_from_env();
    let single = doctrove_model::SentenceModel::load(&dir).unwrap().with_threads(1);
    let parallel = doctrove_model::SentenceModel::load(&dir).unwrap().with_threads(3);
    let (a, b) = (single.embed(&texts).unwrap(), parallel.embed(&texts).unwrap());
    assert_eq!(a.tokens, b.tokens);
    for (i, (x, y)) in a.vectors.iter().zip(&b.vectors).enumerate() {
        assert!(cosine(x, y) > 0.999_999, "text {i}");
    }
}

/// The texts and vectors made by bench/reference_st.py (sentence-transformers and torch from
/// PyPI, the same model folder) over the reference fixture's texts and realistic abstracts;
/// versions inside.
fn sentence_transformers() -> (Vec<String>, Vec<Vec<f32>>, Value) {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/sentence_transformers.json"))
        .expect("the sentence-transformers fixture is JSON");
    let texts: Vec<String> = fixture["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let vectors = (0..texts.len())
        .map(|i| {
            fixture["vectors"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    (texts, vectors, fixture["versions"].clone())
}

/// The lowest cosine between the vectors of `a` and those of `b` at the same index.
fn lowest_cosine(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    a.iter().zip(b).map(|(x, y)| cosine(x, y)).fold(f64::MAX, f64::min)
}

/// The lowest cosine between `model`'s vectors and sentence-transformers', the texts embedded
/// together (passes side by side) and one by one (a lone pass, its products split between the
/// cores); fails below 1 - 1e-4.
fn lowest_cosine_to_sentence_transformers(model: &SentenceModel, what: &str) -> f64 {
    let (texts, reference, _) = sentence_transformers();
    assert!(texts.len() >= 9);
    let together = model.embed(&texts).unwrap().vectors;
    let alone: Vec<Vec<f32>> = texts
        .iter()
        .map(|text| model.embed(std::slice::from_ref(text)).unwrap().vectors.remove(0))
        .collect();
    let mut worst = f64::MAX;
    for (i, want) in reference.iter().enumerate() {
        for (how, got) in [("together", &together[i]), ("alone", &alone[i])] {
            let similarity = cosine(got, want);
            assert!(
                similarity >= 1.0 - 1e-4,
                "{what}, text {i} embedded {how}: cosine {similarity} with sentence-transformers"
            );
            worst = worst.min(similarity);
        }
    }
    worst
}

#[test]
fn vectors_match_sentence_transformers_on_pytorch() {
    let worst = lowest_cosine_to_sentence_transformers(model(), "the default kernel");
    let (texts, _, versions) = sentence_transformers();
    println!(
        "lowest cosine with sentence-transformers {versions} over {} texts: {worst:.7}",
        texts.len()
    );
}

#[test]
fn every_kernel_this_cpu_runs_gives_sentence_transformers_vectors() {
    let dir = doctrove_model::model_dir_from_env();
    let mut kernels: Vec<Kernel> = [InstructionSet::Avx512, InstructionSet::Avx2, InstructionSet::Baseline]
        .into_iter()
        .filter(|isa| isa.runs_here())
        .map(Kernel::packed_on)
        .collect();
    match OpenBlas::load() {
        Ok(blas) => kernels.push(Kernel::openblas(blas)),
        Err(e) => println!("no OpenBLAS kernel to compare: {e}"),
    }
    for kernel in kernels {
        let what = format!("kernel {} on {}", kernel.name(), kernel.instruction_set());
        let model = SentenceModel::load_with(&dir, kernel).unwrap();
        let worst = lowest_cosine_to_sentence_transformers(&model, &what);
        println!("{what}: lowest cosine with sentence-transformers {worst:.7}");
    }
}

#[test]
fn a_huge_input_is_tokenized_only_as_far_as_the_model_reads_it() {
    // 1.2 MB of words and 1 MB of punctuation: the first 256 tokens, as for the whole text.
    let words = "hello world ".repeat(100_000);
    let mut want = vec![101];
    want.extend([7592, 2088].repeat(127));
    want.push(102);
    assert_eq!(model().token_ids(&words).unwrap(), want);
    let marks = "!".repeat(1 << 20);
    let mut want = vec![101];
    want.extend([999; 254]);
    want.push(102);
    assert_eq!(model().token_ids(&marks).unwrap(), want);
    // The vector of the huge text is that of a short text with the same first 256 tokens.
    let short = "hello world ".repeat(200);
    let v = embed(&[&words, &short]);
    assert!(cosine(&v[0], &v[1]) > 0.999_999, "cosine {}", cosine(&v[0], &v[1]));
    // A word the vocabulary cannot split, longer than any prefix, then more words.
    let giant = format!("{} {}", "x".repeat(10_000), "hello world ".repeat(300));
    assert_eq!(model().token_ids(&giant).unwrap().len(), 256);
}

#[test]
fn bf16_vectors_stay_within_0_999_cosine_of_f32_and_of_sentence_transformers() {
    let dir = doctrove_model::model_dir_from_env();
    let Ok(bf16) = SentenceModel::load(&dir).unwrap().with_bf16() else {
        println!("no AVX-512 BF16 on this CPU: --precision bf16 is refused, nothing to compare");
        return;
    };
    let (texts, reference, _) = sentence_transformers();
    let (low, full) = (bf16.embed(&texts).unwrap().vectors, model().embed(&texts).unwrap().vectors);
    let (worst_f32, worst_st) = (lowest_cosine(&low, &full), lowest_cosine(&low, &reference));
    println!(
        "bf16: lowest cosine {worst_f32:.6} with f32, {worst_st:.6} with sentence-transformers, over {} texts",
        texts.len()
    );
    assert!(
        worst_f32 >= 0.999 && worst_st >= 0.999,
        "bf16 vectors drift: {worst_f32} with f32, {worst_st} with sentence-transformers"
    );
    assert!(worst_f32 < 1.0 - 1e-7, "the bf16 path was not taken");
}

#[test]
fn int8_vectors_stay_within_0_999_cosine_of_f32_on_every_test_text() {
    let dir = doctrove_model::model_dir_from_env();
    let Ok(int8) = SentenceModel::load(&dir).unwrap().with_int8() else {
        println!("neither VNNI nor AVX2 on this CPU: --precision int8 is refused, nothing to compare");
        return;
    };
    // The widest of the three kernels this CPU has (int8 runs only on x86-64).
    #[cfg(target_arch = "x86_64")]
    let widest = {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vnni") {
            "avx512vnni"
        } else if has!("avxvnni") {
            "avxvnni"
        } else {
            "avx2"
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let widest = "none";
    assert_eq!((int8.precision(), int8.instruction_set()), ("int8", widest));
    // The sentence-transformers fixture's texts and the numpy reference's.
    let (mut texts, reference, _) = sentence_transformers();
    let fixture: serde_json::Value = serde_json::from_str(include_str!("fixtures/reference.json")).unwrap();
    texts.extend(
        fixture["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string()),
    );
    let (low, full) = (int8.embed(&texts).unwrap().vectors, model().embed(&texts).unwrap().vectors);
    let (worst_f32, worst_st) = (lowest_cosine(&low, &full), lowest_cosine(&low, &reference));
    println!(
        "int8: lowest cosine {worst_f32:.6} with f32 over {} texts, {worst_st:.6} with sentence-transformers",
        texts.len()
    );
    assert!(worst_f32 >= 0.999, "int8 vectors drift from f32's: {worst_f32}");
    assert!(worst_f32 < 1.0 - 1e-6, "the int8 path was not taken");
}
