//! The tokenizer facade: one type for a Hugging Face `tokenizer.json` (plus
//! its `tokenizer_config.json`) and for the vocabulary embedded in a GGUF
//! file, with the BOS/EOS ids and chat template the decoders need.

use std::path::Path;

use candle_core::quantized::gguf_file;

use crate::chat::{render_chat_template, ChatMessage, TemplateTokens};
use crate::config::{display_name, read_sibling_config};
use crate::stream::StreamingDetokenizer;
use crate::{gguf, TokenizeError};

/// A loaded tokenizer. Encoding never pads or truncates (a `tokenizer.json`
/// may carry padding/truncation settings for training; transformers ignores
/// them unless asked, and so do we).
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    name: String,
    bos: Option<(u32, String)>,
    eos: Vec<(u32, String)>,
    eos_ids: Vec<u32>,
    chat_template: Option<String>,
    /// One past the largest id of the model vocabulary and added tokens.
    id_count: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("name", &self.name)
            .field("vocab_size", &self.id_count)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json`; when a sibling `tokenizer_config.json` exists,
    /// takes `chat_template`, `bos_token` and `eos_token` from it (a sibling
    /// `chat_template.jinja` also counts as the template).
    pub fn from_file(path: &Path) -> Result<Self, TokenizeError> {
        let bytes = std::fs::read(path).map_err(|source| TokenizeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut inner = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| {
            TokenizeError::TokenizerFile {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| TokenizeError::TokenizerFile {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let config = read_sibling_config(path)?;
        let config_path = path.with_file_name("tokenizer_config.json");
        let lookup =
            |field: &str, token: Option<String>| -> Result<Option<(u32, String)>, TokenizeError> {
                let Some(token) = token else { return Ok(None) };
                match inner.token_to_id(&token) {
                    Some(id) => Ok(Some((id, token))),
                    None => Err(TokenizeError::ConfigField {
                        path: config_path.clone(),
                        field: field.to_string(),
                        problem: format!("names {token:?}, which is not in {}", path.display()),
                    }),
                }
            };
        let bos = lookup("bos_token", config.bos_token)?;
        let eos = lookup("eos_token", config.eos_token)?.into_iter().collect();
        Ok(Self::assemble(
            inner,
            display_name(path),
            bos,
            eos,
            config.chat_template,
        ))
    }

    /// Builds the tokenizer a GGUF file describes (`content` is its parsed
    /// header; `source` its path, used for the name and in error messages).
    pub fn from_gguf(content: &gguf_file::Content, source: &Path) -> Result<Self, TokenizeError> {
        let built = gguf::build(content, source)?;
        Ok(Self::assemble(
            built.inner,
            display_name(source),
            built.bos,
            built.eos,
            built.chat_template,
        ))
    }

    pub(crate) fn assemble(
        inner: tokenizers::Tokenizer,
        name: String,
        bos: Option<(u32, String)>,
        eos: Vec<(u32, String)>,
        chat_template: Option<String>,
    ) -> Self {
        let model_max = inner.get_vocab(false).into_values().max();
        let added_max = inner.get_added_tokens_decoder().into_keys().max();
        let id_count = model_max.max(added_max).map_or(0, |id| id as usize + 1);
        let eos_ids = eos.iter().map(|(id, _)| *id).collect();
        Self {
            inner,
            name,
            bos,
            eos,
            eos_ids,
            chat_template,
            id_count,
        }
    }

    /// A display name (the source path unless renamed with [`Self::with_name`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the tokenizer (names appear in error messages).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Token ids of `text`; `add_special_tokens` applies the tokenizer's
    /// template (BOS for Gemma, `[CLS] .. [SEP]` for BERT, nothing for SmolLM2).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizeError> {
        self.inner
            .encode_fast(text, add_special_tokens)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|e| TokenizeError::Encode {
                name: self.name.clone(),
                text: preview(text),
                message: e.to_string(),
            })
    }

    /// Text of `ids`; special tokens are dropped when `skip_special_tokens`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizeError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizeError::Decode {
                name: self.name.clone(),
                ids: ids.iter().copied().take(32).collect(),
                message: e.to_string(),
            })
    }

    /// Number of ids, added tokens included: one past the largest id, which
    /// is the row count a model's embedding table must have.
    pub fn vocab_size(&self) -> usize {
        self.id_count
    }

    /// The token string of `id` as the vocabulary spells it (`Ġworld`, `▁x`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The id of a token string as the vocabulary spells it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos.as_ref().map(|(id, _)| *id)
    }

    /// Ids that end a generation (`<|im_end|>`; a GGUF `eot_token_id` too).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Writes `tokenizer.json` and a `tokenizer_config.json` holding the bos
    /// and eos tokens and the chat template into `dir`, so that a tokenizer
    /// built from a GGUF travels with a trained checkpoint and loads back
    /// with [`Self::from_file`] (and in transformers).
    pub fn save(&self, dir: &Path) -> Result<(), TokenizeError> {
        let io = |path: std::path::PathBuf| {
            move |source: std::io::Error| TokenizeError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        let json = dir.join("tokenizer.json");
        self.inner
            .save(&json, false)
            .map_err(|e| TokenizeError::TokenizerFile {
                path: json.clone(),
                message: e.to_string(),
            })?;
        let mut config = serde_json::json!({ "tokenizer_class": "PreTrainedTokenizerFast" });
        if let Some((_, t)) = &self.bos {
            config["bos_token"] = t.clone().into();
        }
        if let Some((_, t)) = self.eos.first() {
            config["eos_token"] = t.clone().into();
        }
        if let Some(t) = &self.chat_template {
            config["chat_template"] = t.clone().into();
        }
        let path = dir.join("tokenizer_config.json");
        let text =
            serde_json::to_string_pretty(&config).map_err(|e| TokenizeError::TokenizerFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
        std::fs::write(&path, text).map_err(io(path))
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Renders the chat template the way transformers' `apply_chat_template`
    /// does (jinja with `trim_blocks`/`lstrip_blocks`, `raise_exception`,
    /// Python string methods, `bos_token`/`eos_token` in scope).
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizeError> {
        let template =
            self.chat_template
                .as_deref()
                .ok_or_else(|| TokenizeError::NoChatTemplate {
                    name: self.name.clone(),
                })?;
        let tokens = TemplateTokens {
            bos_token: self.bos.as_ref().map(|(_, t)| t.as_str()),
            eos_token: self.eos.first().map(|(_, t)| t.as_str()),
        };
        render_chat_template(template, messages, add_generation_prompt, tokens).map_err(|message| {
            TokenizeError::ChatTemplate {
                name: self.name.clone(),
                message,
            }
        })
    }

    /// An incremental decoder for generated ids.
    pub fn detokenizer(&self, skip_special_tokens: bool) -> StreamingDetokenizer<'_> {
        StreamingDetokenizer::new(self, skip_special_tokens)
    }

    /// The underlying `tokenizers` pipeline, for what the facade does not cover.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// At most 80 chars of `text` for error messages.
fn preview(text: &str) -> String {
    let mut out: String = text.chars().take(80).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tokenizer>();
        assert_eq!(preview("abc"), "abc");
        assert_eq!(preview(&"é".repeat(100)).chars().count(), 81);
    }
}
