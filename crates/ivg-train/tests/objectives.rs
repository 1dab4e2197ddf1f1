//! SFT and DPO losses against independent computations, and their gradients
//! against central finite differences.

mod common;

use common::{batch, check_gradients, naive_log_prob, trainable};
use ivg_testkit::tiny_model;
use ivg_train::{Dpo, DpoBatch, Objective, Sft};

#[test]
fn dpo_at_initialisation_is_log_two() {
    let m = tiny_model("llama");
    let (chosen, rejected) = batch();
    let b = DpoBatch::new(&m, chosen, rejected).expect("batch");
    let loss = Dpo::default()
        .loss(&m, &b)
        .expect("loss")
        .to_scalar::<f32>()
        .expect("scalar") as f64;
    assert!((loss - std::f64::consts::LN_2).abs() < 1e-6, "{loss}");
}

#[test]
fn dpo_equals_the_formula() {
    // Policy: the tiny Llama; reference: the tiny Qwen2 (same 96-id vocabulary).
    let (policy, reference) = (tiny_model("llama"), tiny_model("qwen2"));
    let (chosen, rejected) = batch();
    let beta = 0.5;
    let want: f64 = chosen
        .iter()
        .zip(&rejected)
        .map(|(w, l)| {
            let z = beta
                * ((naive_log_prob(&policy, w) - naive_log_prob(&reference, w))
                    - (naive_log_prob(&policy, l) - naive_log_prob(&reference, l)));
            (1.0 + (-z).exp()).ln()
        })
        .sum::<f64>()
        / chosen.len() as f64;
    let b = DpoBatch::new(&reference, chosen, rejected).expect("batch");
    let got = Dpo { beta }
        .loss(&policy, &b)
        .expect("loss")
        .to_scalar::<f32>()
        .expect("scalar") as f64;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    assert!(Dpo { beta: 0.0 }.loss(&policy, &b).is_err());
}

#[test]
fn sft_is_the_mean_response_nll() {
    let m = tiny_model("gpt2");
    let (chosen, _) = batch();
    let tokens: usize = chosen.iter().map(|e| e.response.len()).sum();
    let want = -chosen.iter().map(|e| naive_log_prob(&m, e)).sum::<f64>() / tokens as f64;
    let got = Sft
        .loss(&m, &chosen)
        .expect("loss")
        .to_scalar::<f32>()
        .expect("scalar") as f64;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

#[test]
fn sft_and_dpo_gradients_match_finite_differences() {
    let (m, varmap) = trainable();
    let (chosen, rejected) = batch();
    check_gradients(&|| Sft.loss(&m, &chosen).expect("sft"), &varmap, "sft");
    let reference = tiny_model("qwen2");
    let b = DpoBatch::new(&reference, chosen.clone(), rejected.clone()).expect("batch");
    check_gradients(
        &|| Dpo { beta: 0.5 }.loss(&m, &b).expect("dpo"),
        &varmap,
        "dpo",
    );
}
