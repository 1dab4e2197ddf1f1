//! Builds the trainable model of a job: every parameter a variable of one
//! `VarMap`, taken from a pretrained checkpoint where it has the tensor, and
//! freshly initialised otherwise (a new head, or a whole model from a config).
//! Fresh parameters are drawn from a seeded generator, `N(0, 0.02)` as
//! transformers' `initializer_range`, so a job repeats exactly.

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use ivg_models::arch::bert::BertModel;
use ivg_models::heads::ClassifierHead;
use ivg_models::hf_config::decoder_config_json;
use ivg_models::loader::BertWithHead;
use ivg_models::{
    open, CausalLm, LoadOptions, ModelConfig, ModelSource, QuantPolicy, ScalarLm, Weights,
};
use ivg_tokenize::Tokenizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::spec::ModelSpec;
use crate::TrainError;

/// A trainable model, its variables and the `config.json` its checkpoints carry.
pub struct Built<M> {
    pub model: M,
    pub varmap: VarMap,
    pub config_json: Value,
    /// Longest input the model takes (its position table).
    pub context: usize,
}

/// The configuration and, for a pretrained start, the weights to seed from.
struct Start {
    config: ModelConfig,
    json: Value,
    seed: Option<Weights>,
}

fn start(spec: &ModelSpec, tokenizer: Option<&Tokenizer>) -> Result<Start, TrainError> {
    match spec {
        ModelSpec::Pretrained { path } => {
            let opts = LoadOptions {
                quant: QuantPolicy::Dequantize,
                ..LoadOptions::default()
            };
            let (config, weights) = open(path, &opts)?;
            let json = match (ModelSource::resolve(path)?, &config) {
                (ModelSource::HfDir { dir, .. }, _) => {
                    read_json(&ivg_models::config::config_path(&dir))?
                }
                (ModelSource::Gguf(_), ModelConfig::Decoder(c)) => decoder_config_json(c)?,
                (ModelSource::Gguf(_), _) => {
                    return Err(TrainError::Config(format!(
                        "{}: not a decoder GGUF",
                        path.display()
                    )))
                }
            };
            Ok(Start {
                config,
                json,
                seed: Some(weights),
            })
        }
        ModelSpec::Fresh { config, .. } => {
            let tokenizer = tokenizer
                .ok_or_else(|| TrainError::Config("a fresh model needs model.tokenizer".into()))?;
            let json = fill_from_tokenizer(config, tokenizer)?;
            let config = ModelConfig::from_value(&json, Path::new("model.config"))?;
            Ok(Start {
                config,
                json,
                seed: None,
            })
        }
    }
}

/// Whether a pretrained start is a BERT encoder (a reward job then trains a
/// one-label sequence classifier instead of a causal backbone's scalar head).
pub fn is_bert(spec: &ModelSpec) -> Result<bool, TrainError> {
    let ModelSpec::Pretrained { path } = spec else {
        return Ok(false);
    };
    match ModelSource::resolve(path)? {
        ModelSource::HfDir { dir, .. } => {
            let json = read_json(&ivg_models::config::config_path(&dir))?;
            Ok(json["model_type"] == "bert")
        }
        _ => Ok(false),
    }
}

fn read_json(path: &Path) -> Result<Value, TrainError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
}

/// A fresh config's `vocab_size` and special ids, from the tokenizer it shares.
fn fill_from_tokenizer(config: &Value, tokenizer: &Tokenizer) -> Result<Value, TrainError> {
    let mut json = config.clone();
    let map = json
        .as_object_mut()
        .ok_or_else(|| TrainError::Config("model.config must be a table".into()))?;
    let vocab = tokenizer.vocab_size();
    match map.get("vocab_size").and_then(Value::as_u64) {
        Some(v) if (v as usize) < vocab => {
            return Err(TrainError::Config(format!(
                "model.config.vocab_size is {v} but the tokenizer {} has {vocab} tokens",
                tokenizer.name()
            )))
        }
        Some(_) => {}
        None => {
            map.insert("vocab_size".into(), json!(vocab));
        }
    }
    if let (false, Some(bos)) = (map.contains_key("bos_token_id"), tokenizer.bos_id()) {
        map.insert("bos_token_id".into(), json!(bos));
    }
    if let (false, [eos, ..]) = (map.contains_key("eos_token_id"), tokenizer.eos_ids()) {
        map.insert("eos_token_id".into(), json!(eos));
    }
    map.entry("torch_dtype").or_insert(json!("float32"));
    Ok(json)
}

/// Trainable weights over `varmap`, seeded from the start's checkpoint;
/// `strip` maps a variable name to the checkpoint's (e.g. `bert.`).
fn weights(varmap: &VarMap, start: &Start, strip: &str) -> Weights {
    match &start.seed {
        Some(w) => Weights::from_varmap_seeded(varmap, w.clone(), strip, &Device::Cpu),
        None => Weights::from_varmap(varmap, &Device::Cpu),
    }
}

/// Redraws the randomly initialised variables (those the checkpoint did not
/// provide, and not constant like norm weights or biases) from a seeded
/// `N(0, 0.02)`, in name order.
fn reseed(varmap: &VarMap, start: &Start, strip: &str, seed: u64) -> Result<(), TrainError> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| TrainError::Config("variable map lock poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for name in names {
        let from_checkpoint = start.seed.as_ref().is_some_and(|w| {
            w.contains(name)
                || name
                    .strip_prefix(strip)
                    .is_some_and(|s| !strip.is_empty() && w.contains(s))
        });
        let var = &data[name];
        let flat = var.as_tensor().flatten_all()?;
        let constant = (flat.max(0)? - flat.min(0)?)?.to_scalar::<f32>()? == 0.0;
        if from_checkpoint || constant {
            continue;
        }
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| normal(&mut rng) * 0.02)
            .collect();
        var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu)?)?;
    }
    Ok(())
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// A causal LM (SFT, DPO, Q-form values).
pub fn causal_lm(
    spec: &ModelSpec,
    tokenizer: &Tokenizer,
    seed: u64,
) -> Result<Built<CausalLm>, TrainError> {
    let start = start(spec, Some(tokenizer))?;
    let ctx = start.config.context_length();
    let varmap = VarMap::new();
    let model = CausalLm::load(&weights(&varmap, &start, ""), &start.config, "policy")?;
    reseed(&varmap, &start, "", seed)?;
    Ok(Built {
        model,
        varmap,
        config_json: start.json,
        context: ctx,
    })
}

/// A causal backbone with a scalar `score` head (reward models, scalar values),
/// saved as `*ForSequenceClassification` with one label.
pub fn scalar_lm(
    spec: &ModelSpec,
    tokenizer: &Tokenizer,
    seed: u64,
) -> Result<Built<ScalarLm>, TrainError> {
    let start = start(spec, Some(tokenizer))?;
    let ctx = start.config.context_length();
    let varmap = VarMap::new();
    let model = ScalarLm::load(&weights(&varmap, &start, ""), &start.config, "scalar")?;
    reseed(&varmap, &start, "", seed)?;
    let mut json = start.json.clone();
    let arch = match &start.config {
        ModelConfig::Gpt2(_) => "GPT2ForSequenceClassification".to_string(),
        ModelConfig::Decoder(c) => match c.family.name() {
            "qwen2" => "Qwen2ForSequenceClassification".into(),
            "mistral" => "MistralForSequenceClassification".into(),
            _ => "LlamaForSequenceClassification".into(),
        },
        ModelConfig::Bert(_) => {
            return Err(TrainError::Config(
                "a scalar head needs a causal model, not BERT".into(),
            ))
        }
    };
    json["architectures"] = json!([arch]);
    json["num_labels"] = json!(1);
    json["id2label"] = json!({"0": "LABEL_0"});
    json["label2id"] = json!({"LABEL_0": 0});
    // transformers reads the score at the last token that is not padding;
    // responses end with eos, so a pad id equal to an eos id would make it
    // skip the token ivg reads the reward at. Such a pad id is dropped.
    let pad = json.get("pad_token_id").and_then(Value::as_u64);
    if pad.is_some_and(|p| tokenizer.eos_ids().contains(&(p as u32))) {
        json["pad_token_id"] = Value::Null;
    }
    Ok(Built {
        model,
        varmap,
        config_json: json,
        context: ctx,
    })
}

/// A BERT encoder with a `BertForSequenceClassification` head of `labels` classes.
pub fn bert_classifier(
    spec: &ModelSpec,
    labels: usize,
    seed: u64,
) -> Result<Built<BertWithHead>, TrainError> {
    let ModelSpec::Pretrained { path } = spec else {
        return Err(TrainError::Config(
            "the classifier objective fine-tunes a pretrained BERT: use model.init = \"pretrained\"".into(),
        ));
    };
    let start = start(spec, None)?;
    let ctx = start.config.context_length();
    let ModelConfig::Bert(mut c) = start.config.clone() else {
        return Err(TrainError::Config(format!(
            "{}: the classifier objective needs a BERT checkpoint, found `{}`",
            path.display(),
            start.config.architecture()
        )));
    };
    c.num_labels = labels;
    let varmap = VarMap::new();
    let w = weights(&varmap, &start, "bert.");
    let encoder = BertModel::load(&w.pp("bert"), &c)?;
    let classifier = ClassifierHead::load(&w, "bert", c.hidden_size, labels)?;
    reseed(&varmap, &start, "bert.", seed)?;
    let mut json = start.json.clone();
    json["architectures"] = json!(["BertForSequenceClassification"]);
    let id2label: serde_json::Map<String, Value> = (0..labels)
        .map(|i| (i.to_string(), json!(format!("LABEL_{i}"))))
        .collect();
    let label2id: serde_json::Map<String, Value> = (0..labels)
        .map(|i| (format!("LABEL_{i}"), json!(i)))
        .collect();
    json["id2label"] = Value::Object(id2label);
    json["label2id"] = Value::Object(label2id);
    let model = BertWithHead {
        encoder,
        classifier: Some(classifier),
    };
    Ok(Built {
        model,
        varmap,
        config_json: json,
        context: ctx,
    })
}
