//! Writes a model configuration back as a Hugging Face `config.json`, so that
//! a model opened from a GGUF (which carries its configuration as metadata)
//! can be saved as an HF checkpoint that ivg and transformers load.

use serde_json::{json, Value};

use crate::config::{Activation, AttentionKind, DecoderConfig, DecoderFamily, RopeScaling};
use crate::error::{ModelError, Result};

/// The `config.json` of a Llama, Mistral or Qwen2 decoder.
///
/// Gemma 3, sliding-window layers and rope scaling are refused: nothing in
/// ivg produces them from a GGUF for training, and writing them half-right
/// would give a checkpoint that loads but computes something else.
pub fn decoder_config_json(c: &DecoderConfig) -> Result<Value> {
    let refuse = |what: &str| {
        Err(ModelError::Unsupported(format!(
            "cannot write an HF config.json for a decoder with {what}"
        )))
    };
    if c.family == DecoderFamily::Gemma3 {
        return refuse("the Gemma 3 layout");
    }
    if c.layer_kinds.iter().any(|k| *k != AttentionKind::Global) {
        return refuse("sliding-window layers");
    }
    if c.rope_global.scaling != RopeScaling::None {
        return refuse("rope scaling");
    }
    let act = match c.activation {
        Activation::Silu => "silu",
        Activation::GeluTanh => "gelu_pytorch_tanh",
        Activation::Gelu => "gelu",
        Activation::Relu => "relu",
    };
    let (model_type, arch) = match c.family {
        DecoderFamily::Mistral => ("mistral", "MistralForCausalLM"),
        DecoderFamily::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
        _ => ("llama", "LlamaForCausalLM"),
    };
    let mut v = json!({
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "rms_norm_eps": c.norm_eps,
        "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": c.tie_word_embeddings,
        "hidden_act": act,
        "rope_theta": c.rope_global.theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_global.theta},
        "torch_dtype": "float32",
    });
    if c.family == DecoderFamily::Llama {
        v["attention_bias"] = json!(c.attention_bias);
        v["mlp_bias"] = json!(c.mlp_bias);
    }
    if let Some(bos) = c.bos_token_id {
        v["bos_token_id"] = json!(bos);
    }
    match c.eos_token_ids.as_slice() {
        [] => {}
        [one] => v["eos_token_id"] = json!(one),
        many => v["eos_token_id"] = json!(many),
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use std::path::Path;

    #[test]
    fn round_trips_through_the_reader() {
        let src = json!({
            "model_type": "llama", "vocab_size": 96, "hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 64, "rope_theta": 100000.0, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": true, "bos_token_id": 1, "eos_token_id": 2
        });
        let p = Path::new("c.json");
        let ModelConfig::Decoder(c) = ModelConfig::from_value(&src, p).expect("read") else {
            panic!("decoder expected");
        };
        let out = decoder_config_json(&c).expect("write");
        let ModelConfig::Decoder(back) = ModelConfig::from_value(&out, p).expect("re-read") else {
            panic!("decoder expected");
        };
        assert_eq!(back, c);
        assert_eq!(out["rope_parameters"]["rope_theta"], json!(100000.0));
    }
}
