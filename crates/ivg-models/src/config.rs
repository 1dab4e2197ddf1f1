//! `config.json` parsed once into a typed, tagged configuration.
//!
//! Follows the Hugging Face config files of `GPT2LMHeadModel`, `LlamaForCausalLM`
//! (also Mistral, Qwen2, SmolLM2), `Gemma3ForCausalLM` (`gemma3_text`) and
//! `BertModel`. Both the transformers 4.x layout (top-level `rope_theta`,
//! `rope_scaling`) and the 5.x layout (`rope_parameters`, per layer type for
//! Gemma 3) are read: a reader that only looks at `rope_theta` silently uses
//! 10000 on 5.x files (architecture.md).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ModelError, Result};

/// Architectures this crate implements, for error messages.
pub const SUPPORTED: &str = "gpt2, llama, mistral, qwen2, gemma3_text, bert";

/// A model configuration, tagged by `model_type`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    Gpt2(Gpt2Config),
    Decoder(DecoderConfig),
    Bert(BertConfig),
}

impl ModelConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_value(&value, path)
    }

    /// Builds the typed configuration from parsed JSON; `path` is named in errors.
    pub fn from_value(value: &Value, path: &Path) -> Result<Self> {
        let model_type = value
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| field_err(path, "model_type", "missing or not a string"))?;
        match model_type {
            "gpt2" => Ok(Self::Gpt2(Gpt2Config::from_value(value, path)?)),
            "llama" | "mistral" | "qwen2" | "gemma3_text" | "gemma3" => {
                let family = DecoderFamily::from_model_type(model_type);
                Ok(Self::Decoder(DecoderConfig::from_value(
                    value, family, path,
                )?))
            }
            "bert" => Ok(Self::Bert(BertConfig::from_value(value, path)?)),
            other => Err(ModelError::UnknownArchitecture {
                path: path.to_path_buf(),
                model_type: other.to_string(),
                supported: SUPPORTED,
            }),
        }
    }

    /// The `model_type` name of this configuration.
    pub fn architecture(&self) -> &'static str {
        match self {
            Self::Gpt2(_) => "gpt2",
            Self::Decoder(c) => c.family.name(),
            Self::Bert(_) => "bert",
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.vocab_size,
            Self::Decoder(c) => c.vocab_size,
            Self::Bert(c) => c.vocab_size,
        }
    }

    pub fn context_length(&self) -> usize {
        match self {
            Self::Gpt2(c) => c.n_positions,
            Self::Decoder(c) => c.max_position_embeddings,
            Self::Bert(c) => c.max_position_embeddings,
        }
    }
}

pub(crate) fn field_err(path: &Path, field: &str, problem: impl Into<String>) -> ModelError {
    ModelError::ConfigField {
        path: path.to_path_buf(),
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// Deserializes `value` into `T`, turning serde's message (which names the
/// missing or mistyped field) into an error naming the file.
fn parse<T: for<'de> Deserialize<'de>>(value: &Value, path: &Path) -> Result<T> {
    T::deserialize(value).map_err(|e| {
        let msg = e.to_string();
        let field = msg.split('`').nth(1).unwrap_or("(see message)").to_string();
        ModelError::ConfigField {
            path: path.to_path_buf(),
            field,
            problem: msg,
        }
    })
}

fn positive(path: &Path, field: &str, v: usize) -> Result<usize> {
    if v == 0 {
        return Err(field_err(path, field, "must be positive, got 0"));
    }
    Ok(v)
}

/// Activation functions named as in HF configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// exact erf GELU (`gelu`).
    Gelu,
    Relu,
}

impl Activation {
    pub fn from_name(name: &str, path: &Path, field: &str) -> Result<Self> {
        match name {
            "silu" | "swish" => Ok(Self::Silu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" | "gelu_tanh" => Ok(Self::GeluTanh),
            "gelu" => Ok(Self::Gelu),
            "relu" => Ok(Self::Relu),
            other => Err(field_err(
                path,
                field,
                format!("unsupported activation `{other}`"),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_positions: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_inner: usize,
    pub activation: Activation,
    pub layer_norm_epsilon: f64,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct RawGpt2 {
    vocab_size: usize,
    n_positions: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    n_inner: Option<usize>,
    #[serde(default = "gelu_new")]
    activation_function: String,
    #[serde(default = "eps_1e5")]
    layer_norm_epsilon: f64,
    bos_token_id: Option<u32>,
    eos_token_id: Option<Value>,
}

fn gelu_new() -> String {
    "gelu_new".into()
}
fn eps_1e5() -> f64 {
    1e-5
}

impl Gpt2Config {
    fn from_value(value: &Value, path: &Path) -> Result<Self> {
        let raw: RawGpt2 = parse(value, path)?;
        let n_embd = positive(path, "n_embd", raw.n_embd)?;
        let n_head = positive(path, "n_head", raw.n_head)?;
        if n_embd % n_head != 0 {
            return Err(field_err(
                path,
                "n_head",
                format!("{n_head} does not divide n_embd {n_embd}"),
            ));
        }
        Ok(Self {
            vocab_size: positive(path, "vocab_size", raw.vocab_size)?,
            n_positions: positive(path, "n_positions", raw.n_positions)?,
            n_embd,
            n_layer: positive(path, "n_layer", raw.n_layer)?,
            n_head,
            n_inner: raw.n_inner.unwrap_or(4 * n_embd),
            activation: Activation::from_name(
                &raw.activation_function,
                path,
                "activation_function",
            )?,
            layer_norm_epsilon: raw.layer_norm_epsilon,
            bos_token_id: raw.bos_token_id,
            eos_token_ids: token_ids(raw.eos_token_id.as_ref(), path, "eos_token_id")?,
        })
    }
}

/// Reads `eos_token_id`, which HF writes as an int, a list of ints or null.
pub(crate) fn token_ids(v: Option<&Value>, path: &Path, field: &str) -> Result<Vec<u32>> {
    let to_id = |x: &Value| {
        x.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| field_err(path, field, format!("not a token id: {x}")))
    };
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(to_id).collect(),
        Some(x) => Ok(vec![to_id(x)?]),
    }
}

/// The members of the decoder family that share one backbone implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderFamily {
    Llama,
    Mistral,
    Qwen2,
    /// Gemma 3: GELU-tanh, q/k norms, sandwich norms, sqrt(d)-scaled embeddings,
    /// interleaved local (sliding) and global layers with two rope bases.
    Gemma3,
}

impl DecoderFamily {
    fn from_model_type(t: &str) -> Self {
        match t {
            "mistral" => Self::Mistral,
            "qwen2" => Self::Qwen2,
            "gemma3_text" | "gemma3" => Self::Gemma3,
            _ => Self::Llama,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Mistral => "mistral",
            Self::Qwen2 => "qwen2",
            Self::Gemma3 => "gemma3_text",
        }
    }
}

/// Rotary embedding frequencies (and their scaling) of one layer kind.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    pub scaling: RopeScaling,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// positions divided by `factor`.
    Linear {
        factor: f64,
    },
    /// Llama 3.x frequency-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// Whether a decoder layer attends to all previous positions or to a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKind {
    Global,
    /// Sliding window: query `i` sees keys `j` with `i - j < window`.
    Local {
        window: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    pub family: DecoderFamily,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub norm_eps: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub activation: Activation,
    pub rope_global: RopeConfig,
    pub rope_local: RopeConfig,
    /// One entry per layer.
    pub layer_kinds: Vec<AttentionKind>,
    /// Multiplies `q k^T` (1/sqrt(head_dim), or Gemma's `query_pre_attn_scalar^-1/2`).
    pub attention_scale: f64,
    /// Added to stored norm weights: HF Gemma stores `w` and scales by `1 + w`,
    /// llama.cpp's GGUF stores `1 + w` already.
    pub norm_weight_offset: f64,
    pub final_logit_softcapping: Option<f64>,
    pub attn_logit_softcapping: Option<f64>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl DecoderConfig {
    /// Gemma 3 specifics (q/k norms, sandwich norms, scaled embeddings).
    pub fn is_gemma(&self) -> bool {
        self.family == DecoderFamily::Gemma3
    }
}

#[derive(Deserialize)]
struct RawDecoder {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    hidden_activation: Option<String>,
    rope_theta: Option<f64>,
    rope_scaling: Option<Value>,
    rope_parameters: Option<Value>,
    rope_local_base_freq: Option<f64>,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    sliding_window_pattern: Option<usize>,
    layer_types: Option<Vec<String>>,
    query_pre_attn_scalar: Option<f64>,
    final_logit_softcapping: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<Value>,
}

impl DecoderConfig {
    fn from_value(value: &Value, family: DecoderFamily, path: &Path) -> Result<Self> {
        let raw: RawDecoder = parse(value, path)?;
        let gemma = family == DecoderFamily::Gemma3;
        let hidden_size = positive(path, "hidden_size", raw.hidden_size)?;
        let num_heads = positive(path, "num_attention_heads", raw.num_attention_heads)?;
        let num_kv_heads = raw.num_key_value_heads.unwrap_or(num_heads);
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(field_err(
                path,
                "num_key_value_heads",
                format!(
                    "{num_kv_heads} must be positive and divide num_attention_heads {num_heads}"
                ),
            ));
        }
        let head_dim = raw.head_dim.unwrap_or(hidden_size / num_heads);
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(field_err(
                path,
                "head_dim",
                format!("must be positive and even, got {head_dim}"),
            ));
        }
        let num_layers = positive(path, "num_hidden_layers", raw.num_hidden_layers)?;
        let (rope_global, rope_local) = rope_configs(&raw, gemma, path)?;
        let layer_kinds = layer_kinds(&raw, family, num_layers, path)?;
        let act_name = raw
            .hidden_activation
            .clone()
            .or(raw.hidden_act.clone())
            .unwrap_or_else(|| {
                if gemma {
                    "gelu_pytorch_tanh".into()
                } else {
                    "silu".into()
                }
            });
        let scale_base = match (gemma, raw.query_pre_attn_scalar) {
            (true, Some(s)) => s,
            _ => head_dim as f64,
        };
        Ok(Self {
            family,
            vocab_size: positive(path, "vocab_size", raw.vocab_size)?,
            hidden_size,
            intermediate_size: positive(path, "intermediate_size", raw.intermediate_size)?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(2048),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(gemma),
            attention_bias: raw.attention_bias.unwrap_or(family == DecoderFamily::Qwen2),
            mlp_bias: raw.mlp_bias.unwrap_or(false),
            activation: Activation::from_name(&act_name, path, "hidden_act")?,
            rope_global,
            rope_local,
            layer_kinds,
            attention_scale: 1.0 / scale_base.sqrt(),
            norm_weight_offset: if gemma { 1.0 } else { 0.0 },
            final_logit_softcapping: raw.final_logit_softcapping,
            attn_logit_softcapping: raw.attn_logit_softcapping,
            bos_token_id: raw.bos_token_id,
            eos_token_ids: token_ids(raw.eos_token_id.as_ref(), path, "eos_token_id")?,
        })
    }
}

/// Global and local rope settings from either config layout.
fn rope_configs(raw: &RawDecoder, gemma: bool, path: &Path) -> Result<(RopeConfig, RopeConfig)> {
    let default_theta = if gemma { 1_000_000.0 } else { 10_000.0 };
    let legacy = RopeConfig {
        theta: raw.rope_theta.unwrap_or(default_theta),
        scaling: rope_scaling(raw.rope_scaling.as_ref(), path, "rope_scaling")?,
    };
    let local_legacy = RopeConfig {
        theta: raw.rope_local_base_freq.unwrap_or(10_000.0),
        scaling: RopeScaling::None,
    };
    let Some(params) = raw.rope_parameters.as_ref().filter(|v| !v.is_null()) else {
        let local = if gemma { local_legacy } else { legacy.clone() };
        return Ok((legacy, local));
    };
    if let Some(full) = params.get("full_attention") {
        let global = rope_from_params(full, legacy.theta, path, "rope_parameters.full_attention")?;
        let local = match params.get("sliding_attention") {
            Some(s) => rope_from_params(
                s,
                local_legacy.theta,
                path,
                "rope_parameters.sliding_attention",
            )?,
            None => global.clone(),
        };
        return Ok((global, local));
    }
    let global = rope_from_params(params, legacy.theta, path, "rope_parameters")?;
    let local = if gemma { local_legacy } else { global.clone() };
    Ok((global, local))
}

fn rope_from_params(v: &Value, default_theta: f64, path: &Path, field: &str) -> Result<RopeConfig> {
    let theta = v
        .get("rope_theta")
        .and_then(Value::as_f64)
        .unwrap_or(default_theta);
    Ok(RopeConfig {
        theta,
        scaling: rope_scaling(Some(v), path, field)?,
    })
}

fn rope_scaling(v: Option<&Value>, path: &Path, field: &str) -> Result<RopeScaling> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(RopeScaling::None);
    };
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |key: &str| {
        v.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| field_err(path, &format!("{field}.{key}"), "missing or not a number"))
    };
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear {
            factor: num("factor")?,
        }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")?,
        }),
        other => Err(field_err(
            path,
            &format!("{field}.rope_type"),
            format!("unsupported rope type `{other}`"),
        )),
    }
}

fn layer_kinds(
    raw: &RawDecoder,
    family: DecoderFamily,
    n: usize,
    path: &Path,
) -> Result<Vec<AttentionKind>> {
    let window = raw.sliding_window.filter(|w| *w > 0);
    if let Some(types) = &raw.layer_types {
        if types.len() != n {
            return Err(field_err(
                path,
                "layer_types",
                format!("{} entries for {n} layers", types.len()),
            ));
        }
        return types
            .iter()
            .map(|t| match (t.as_str(), window) {
                ("full_attention", _) => Ok(AttentionKind::Global),
                ("sliding_attention", Some(window)) => Ok(AttentionKind::Local { window }),
                ("sliding_attention", None) => Err(field_err(
                    path,
                    "sliding_window",
                    "needed by sliding_attention layers",
                )),
                (other, _) => Err(field_err(
                    path,
                    "layer_types",
                    format!("unknown layer type `{other}`"),
                )),
            })
            .collect();
    }
    let kinds = match (family, window) {
        (DecoderFamily::Gemma3, Some(window)) => {
            let pattern = raw.sliding_window_pattern.unwrap_or(6).max(1);
            (0..n)
                .map(|i| {
                    if (i + 1) % pattern == 0 {
                        AttentionKind::Global
                    } else {
                        AttentionKind::Local { window }
                    }
                })
                .collect()
        }
        (DecoderFamily::Mistral, Some(window)) => vec![AttentionKind::Local { window }; n],
        (DecoderFamily::Qwen2, Some(window)) if raw.use_sliding_window == Some(true) => {
            vec![AttentionKind::Local { window }; n]
        }
        _ => vec![AttentionKind::Global; n],
    };
    Ok(kinds)
}

#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub activation: Activation,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    /// Classes of the sequence-classification head (`id2label`), if any.
    pub num_labels: usize,
}

#[derive(Deserialize)]
struct RawBert {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "gelu")]
    hidden_act: String,
    max_position_embeddings: usize,
    #[serde(default = "two")]
    type_vocab_size: usize,
    #[serde(default = "eps_1e12")]
    layer_norm_eps: f64,
    #[serde(default)]
    pad_token_id: u32,
    id2label: Option<serde_json::Map<String, Value>>,
    num_labels: Option<usize>,
}

fn gelu() -> String {
    "gelu".into()
}
fn two() -> usize {
    2
}
fn eps_1e12() -> f64 {
    1e-12
}

impl BertConfig {
    fn from_value(value: &Value, path: &Path) -> Result<Self> {
        let raw: RawBert = parse(value, path)?;
        let hidden = positive(path, "hidden_size", raw.hidden_size)?;
        let heads = positive(path, "num_attention_heads", raw.num_attention_heads)?;
        if hidden % heads != 0 {
            return Err(field_err(
                path,
                "num_attention_heads",
                format!("{heads} does not divide hidden_size {hidden}"),
            ));
        }
        Ok(Self {
            vocab_size: positive(path, "vocab_size", raw.vocab_size)?,
            hidden_size: hidden,
            num_layers: positive(path, "num_hidden_layers", raw.num_hidden_layers)?,
            num_heads: heads,
            intermediate_size: positive(path, "intermediate_size", raw.intermediate_size)?,
            activation: Activation::from_name(&raw.hidden_act, path, "hidden_act")?,
            max_position_embeddings: positive(
                path,
                "max_position_embeddings",
                raw.max_position_embeddings,
            )?,
            type_vocab_size: raw.type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps,
            pad_token_id: raw.pad_token_id,
            num_labels: raw
                .num_labels
                .or(raw.id2label.map(|m| m.len()))
                .unwrap_or(2),
        })
    }
}

/// Path of `config.json` inside a model directory.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.json")
}
