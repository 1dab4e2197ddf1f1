//! GGUF as a weight and config source for the decoder family.
//!
//! Maps Hugging Face state-dict names to llama.cpp's tensor names and reads the
//! configuration from GGUF metadata (llama.cpp `gguf-py/gguf/constants.py` and
//! `convert_hf_to_gguf.py`). llama.cpp's converter permutes the q/k rows of
//! `llama` checkpoints for its interleaved rope; we undo that permutation at
//! load (on the quantized rows directly) so that one rope, the HF one, serves
//! every source, and a model trained from a GGUF saves as a valid HF checkpoint.

use std::borrow::Cow;
use std::fs::File;
use std::path::Path;

use candle_core::quantized::{gguf_file, QStorage, QTensor};
use candle_core::Device;

use crate::config::{
    token_ids, Activation, AttentionKind, DecoderConfig, DecoderFamily, RopeConfig, RopeScaling,
};
use crate::error::{ModelError, Result};
use crate::weights::{QuantPolicy, Weights};

/// GGUF architectures this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufArch {
    Llama,
    Qwen2,
    Gemma3,
}

/// Name mapping (and q/k un-permutation) for one GGUF file.
#[derive(Debug, Clone)]
pub struct GgufNames {
    arch: GgufArch,
    n_head: usize,
    n_kv_head: usize,
}

impl GgufNames {
    /// The llama.cpp name of an HF tensor name, if it has one.
    pub fn map(&self, hf: &str) -> Option<String> {
        match hf {
            "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
            "model.norm.weight" => return Some("output_norm.weight".into()),
            "lm_head.weight" => return Some("output.weight".into()),
            _ => {}
        }
        let rest = hf.strip_prefix("model.layers.")?;
        let (layer, rest) = rest.split_once('.')?;
        let (module, suffix) = rest.rsplit_once('.')?;
        let gemma = self.arch == GgufArch::Gemma3;
        let name = match module {
            "input_layernorm" => "attn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" => "attn_output",
            "self_attn.q_norm" => "attn_q_norm",
            "self_attn.k_norm" => "attn_k_norm",
            "post_attention_layernorm" if gemma => "post_attention_norm",
            "post_attention_layernorm" => "ffn_norm",
            "pre_feedforward_layernorm" => "ffn_norm",
            "post_feedforward_layernorm" => "post_ffw_norm",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" => "ffn_up",
            "mlp.down_proj" => "ffn_down",
            _ => return None,
        };
        Some(format!("blk.{layer}.{name}.{suffix}"))
    }

    /// Undoes llama.cpp's q/k row permutation for `llama` files.
    pub(crate) fn fix_tensor(&self, hf: &str, q: QTensor) -> Result<QTensor> {
        if self.arch != GgufArch::Llama {
            return Ok(q);
        }
        let heads = if hf.ends_with("self_attn.q_proj.weight") {
            self.n_head
        } else if hf.ends_with("self_attn.k_proj.weight") {
            self.n_kv_head
        } else {
            return Ok(q);
        };
        unpermute_rows(q, heads)
    }
}

/// HF row `h*hd + j*(hd/2) + i` is GGUF row `h*hd + 2*i + j`.
fn unpermute_rows(q: QTensor, heads: usize) -> Result<QTensor> {
    let (rows, cols) = q.shape().dims2()?;
    if heads == 0 || rows % (2 * heads) != 0 {
        return Err(ModelError::Unsupported(format!(
            "cannot un-permute a q/k matrix of {rows} rows for {heads} heads"
        )));
    }
    let dtype = q.dtype();
    let row_bytes = cols / dtype.block_size() * dtype.type_size();
    let data = q.data()?;
    let hd = rows / heads;
    let mut out = Vec::with_capacity(data.len());
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..hd / 2 {
                let src = h * hd + 2 * i + j;
                out.extend_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    let device = q.device();
    let storage = QStorage::from_data(Cow::Owned(out), &device, dtype)?;
    Ok(QTensor::new(storage, (rows, cols))?)
}

/// An opened GGUF file: its metadata and a handle for lazy tensor reads.
pub struct GgufFile {
    pub content: gguf_file::Content,
    file: File,
    path: std::path::PathBuf,
}

impl GgufFile {
    /// Reads the header and metadata; a truncated or foreign file is an error naming it.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let content =
            gguf_file::Content::read(&mut file).map_err(|e| gguf_err(path, e.to_string()))?;
        let len = file
            .metadata()
            .map_err(|source| ModelError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        check_extent(&content, len, path)?;
        Ok(Self {
            content,
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn architecture(&self) -> Result<String> {
        Ok(self.string("general.architecture")?.to_string())
    }

    fn string(&self, key: &str) -> Result<&str> {
        let v = self.value(key)?;
        v.to_string()
            .map(String::as_str)
            .map_err(|_| gguf_err(&self.path, format!("metadata `{key}` is not a string")))
    }

    fn value(&self, key: &str) -> Result<&gguf_file::Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| gguf_err(&self.path, format!("missing metadata `{key}`")))
    }

    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.value(key)?;
        let n = v
            .to_u64()
            .or_else(|_| v.to_u32().map(u64::from))
            .or_else(|_| v.to_i32().map(|x| x.max(0) as u64))
            .map_err(|_| gguf_err(&self.path, format!("metadata `{key}` is not an integer")))?;
        Ok(n as usize)
    }

    fn f64(&self, key: &str) -> Result<f64> {
        let v = self.value(key)?;
        v.to_f32()
            .map(f64::from)
            .or_else(|_| v.to_f64())
            .map_err(|_| gguf_err(&self.path, format!("metadata `{key}` is not a float")))
    }

    fn opt<T>(&self, key: &str, get: impl Fn(&Self, &str) -> Result<T>) -> Result<Option<T>> {
        if self.content.metadata.contains_key(key) {
            get(self, key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The decoder configuration described by the metadata.
    pub fn decoder_config(&self) -> Result<DecoderConfig> {
        let arch_name = self.architecture()?;
        let family = match arch_name.as_str() {
            "llama" => DecoderFamily::Llama,
            "qwen2" => DecoderFamily::Qwen2,
            "gemma3" => DecoderFamily::Gemma3,
            other => {
                return Err(gguf_err(
                    &self.path,
                    format!(
                    "unsupported general.architecture `{other}` (supported: llama, qwen2, gemma3)"
                ),
                ))
            }
        };
        let k = |s: &str| format!("{arch_name}.{s}");
        let hidden = self.usize(&k("embedding_length"))?;
        let heads = self.usize(&k("attention.head_count"))?;
        let kv_heads = self
            .opt(&k("attention.head_count_kv"), Self::usize)?
            .unwrap_or(heads);
        let head_dim = self
            .opt(&k("attention.key_length"), Self::usize)?
            .unwrap_or(hidden / heads.max(1));
        let layers = self.usize(&k("block_count"))?;
        let gemma = family == DecoderFamily::Gemma3;
        let theta = self
            .opt(&k("rope.freq_base"), Self::f64)?
            .unwrap_or(if gemma { 1e6 } else { 1e4 });
        let scaling = match self.opt(&k("rope.scaling.type"), |s, key| {
            s.string(key).map(str::to_string)
        })? {
            Some(t) if t == "linear" => RopeScaling::Linear {
                factor: self.f64(&k("rope.scaling.factor"))?,
            },
            Some(t) if t != "none" => {
                return Err(gguf_err(
                    &self.path,
                    format!("unsupported rope scaling `{t}`"),
                ))
            }
            _ => RopeScaling::None,
        };
        let window = self.opt(&k("attention.sliding_window"), Self::usize)?;
        let layer_kinds = match (gemma, window) {
            // llama.cpp's gemma3: every sixth layer global, the rest local.
            (true, Some(window)) => (0..layers)
                .map(|i| {
                    if (i + 1) % 6 == 0 {
                        AttentionKind::Global
                    } else {
                        AttentionKind::Local { window }
                    }
                })
                .collect(),
            _ => vec![AttentionKind::Global; layers],
        };
        let vocab = match self.opt(&k("vocab_size"), Self::usize)? {
            Some(v) => v,
            None => self
                .value("tokenizer.ggml.tokens")?
                .to_vec()
                .map_err(|e| gguf_err(&self.path, e.to_string()))?
                .len(),
        };
        let eos = self
            .content
            .metadata
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok());
        let eos_json = eos.map(serde_json::Value::from);
        Ok(DecoderConfig {
            family,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: self.usize(&k("feed_forward_length"))?,
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            norm_eps: self.f64(&k("attention.layer_norm_rms_epsilon"))?,
            max_position_embeddings: self.usize(&k("context_length"))?,
            tie_word_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
            attention_bias: self.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            mlp_bias: false,
            activation: if gemma {
                Activation::GeluTanh
            } else {
                Activation::Silu
            },
            rope_global: RopeConfig {
                theta,
                scaling: scaling.clone(),
            },
            rope_local: RopeConfig {
                theta: if gemma { 10_000.0 } else { theta },
                scaling,
            },
            layer_kinds,
            attention_scale: 1.0 / (head_dim as f64).sqrt(),
            norm_weight_offset: 0.0,
            final_logit_softcapping: None,
            attn_logit_softcapping: None,
            bos_token_id: self
                .content
                .metadata
                .get("tokenizer.ggml.bos_token_id")
                .and_then(|v| v.to_u32().ok()),
            eos_token_ids: token_ids(eos_json.as_ref(), &self.path, "tokenizer.ggml.eos_token_id")?,
        })
    }

    /// A weight source over this file's tensors, under HF names.
    pub fn weights(
        self,
        config: &DecoderConfig,
        device: &Device,
        quant: QuantPolicy,
    ) -> Result<Weights> {
        let arch = match config.family {
            DecoderFamily::Gemma3 => GgufArch::Gemma3,
            DecoderFamily::Qwen2 => GgufArch::Qwen2,
            _ => GgufArch::Llama,
        };
        let names = GgufNames {
            arch,
            n_head: config.num_heads,
            n_kv_head: config.num_kv_heads,
        };
        Ok(Weights::from_gguf(
            self.content,
            self.file,
            &self.path,
            names,
            device,
            quant,
        ))
    }
}

/// A truncated download passes the header read but its tensors run past the end.
fn check_extent(content: &gguf_file::Content, file_len: u64, path: &Path) -> Result<()> {
    for (name, info) in &content.tensor_infos {
        let elems = info.shape.elem_count();
        let dtype = info.ggml_dtype;
        let bytes = (elems / dtype.block_size() * dtype.type_size()) as u64;
        let end = content.tensor_data_offset + info.offset + bytes;
        if end > file_len {
            return Err(gguf_err(
                path,
                format!("truncated: tensor `{name}` ends at byte {end} but the file has {file_len} bytes"),
            ));
        }
    }
    Ok(())
}

fn gguf_err(path: &Path, reason: String) -> ModelError {
    ModelError::Gguf {
        path: path.to_path_buf(),
        reason,
    }
}
