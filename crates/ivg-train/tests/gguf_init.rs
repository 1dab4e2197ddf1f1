//! Training can start from a GGUF: SmolLM2-135M-Instruct, dequantized into
//! trainable variables, computes the same logits as the inference model
//! loaded from the same file (so every tensor, q/k permutation included, is
//! taken from the checkpoint and none is left random), and its `config.json`
//! describes the same model.

use ivg_assets::{ensure_default, Asset};
use ivg_models::gguf::GgufFile;
use ivg_models::{load_causal_lm, LoadOptions, LogitsSpan, ModelConfig, QuantPolicy};
use ivg_tokenize::Tokenizer;
use ivg_train::build::causal_lm;
use ivg_train::ModelSpec;

#[test]
fn smollm2_gguf_seeds_a_trainable_model_exactly() {
    let path = ensure_default(Asset::SmolLm2Gguf).expect("asset");
    let gguf = GgufFile::open(&path).expect("gguf");
    let tok = Tokenizer::from_gguf(&gguf.content, &path).expect("tokenizer");
    let built = causal_lm(&ModelSpec::Pretrained { path: path.clone() }, &tok, 0).expect("build");
    let opts = LoadOptions {
        quant: QuantPolicy::Dequantize,
        ..LoadOptions::default()
    };
    let reference = load_causal_lm(&path, &opts).expect("reference");
    let config = ModelConfig::from_value(&built.config_json, std::path::Path::new("config.json"))
        .expect("config");
    assert_eq!(&config, reference.config());
    let ids = tok
        .encode("The movie was a delight from start to", false)
        .expect("ids");
    let logits = |m: &ivg_models::CausalLm| {
        let mut s = m.new_state();
        let l = m
            .prefill(std::slice::from_ref(&ids), &mut s, LogitsSpan::All)
            .expect("forward");
        l.flatten_all().expect("f").to_vec1::<f32>().expect("v")
    };
    let (a, b) = (logits(&built.model), logits(&reference));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        worst < 1e-3,
        "trainable vs inference logits differ by {worst}"
    );
}
