//! Builds a `tokenizers` pipeline from the vocabulary a GGUF file carries in
//! its metadata (llama.cpp keys `tokenizer.ggml.*`), mirroring what
//! transformers does for the same file (`integrations/gguf/
//! gguf_tokenizer_mapping.py` in transformers 5.x: `byte_level_tokenizer`,
//! `gemma_tokenizer`, `add_gguf_special_tokens`, and
//! `TokenizersBackend.update_post_processor` for the BOS/EOS template).
//!
//! Two vocabularies are supported, each checked id-for-id against
//! transformers (`tests/fixtures/reference_ids.json`):
//! * `tokenizer.ggml.model = "gpt2"`: byte-level BPE (SmolLM2), see
//!   [`byte_level`];
//! * `tokenizer.ggml.model = "llama"` on a Gemma architecture: SentencePiece
//!   pieces as a byte-fallback BPE (Gemma 3), see [`sentencepiece`].
//!
//! Anything else is refused with an error naming the key and value rather
//! than built approximately: a wrong pre-tokenizer silently yields ids the
//! model never saw in training.

mod byte_level;
mod meta;
mod sentencepiece;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use tokenizers::{AddedToken, PostProcessorWrapper};

use crate::TokenizeError;
use meta::Meta;

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_ARCH: &str = "general.architecture";
const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// llama.cpp `llama_token_type`: a control token (`<|im_start|>`, `<bos>`).
const TOKEN_TYPE_CONTROL: i32 = 3;
/// llama.cpp `llama_token_type`: a user-defined token matched whole in text.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Architectures whose SentencePiece vocabulary we rebuild the Gemma way.
const GEMMA_ARCHS: [&str; 3] = ["gemma", "gemma2", "gemma3"];

/// A tokenizer built from GGUF metadata plus what the facade keeps beside it.
pub(crate) struct GgufTokenizer {
    pub(crate) inner: tokenizers::Tokenizer,
    /// `(id, token string)` of `tokenizer.ggml.bos_token_id`.
    pub(crate) bos: Option<(u32, String)>,
    /// `(id, token string)` of `eos_token_id`, then `eot_token_id` if distinct.
    pub(crate) eos: Vec<(u32, String)>,
    pub(crate) chat_template: Option<String>,
}

/// The vocabulary family decides which raw token strings can be added whole.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    ByteLevel,
    SentencePiece,
}

/// Special token ids from the metadata, each checked against the vocabulary.
struct SpecialIds {
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
}

impl SpecialIds {
    fn read(meta: &Meta<'_>, vocab_len: usize) -> Result<Self, TokenizeError> {
        let id = |key: &str| -> Result<Option<u32>, TokenizeError> {
            match meta.opt_id(key)? {
                Some(id) if id as usize >= vocab_len => Err(meta.bad(
                    key,
                    format!("id {id} is outside the vocabulary of {vocab_len} tokens"),
                )),
                other => Ok(other),
            }
        };
        Ok(Self {
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
        })
    }
}

/// Reads the tokenizer described by `content` (the metadata of the GGUF file
/// at `path`, which is only used in error messages).
pub(crate) fn build(content: &Content, path: &Path) -> Result<GgufTokenizer, TokenizeError> {
    let meta = Meta::new(content, path);
    let kind = meta.string(KEY_MODEL)?;
    let tokens = meta.strings(KEY_TOKENS)?;
    let types = meta.opt_i32s(KEY_TOKEN_TYPE)?;
    if let Some(types) = &types {
        if types.len() != tokens.len() {
            return Err(meta.bad(
                KEY_TOKEN_TYPE,
                format!(
                    "has {} entries but {KEY_TOKENS} has {}",
                    types.len(),
                    tokens.len()
                ),
            ));
        }
    }
    let ids = SpecialIds::read(&meta, tokens.len())?;
    let (mut inner, family) = match kind {
        "gpt2" => (byte_level::build(&meta, &tokens)?, Family::ByteLevel),
        "llama" => {
            let arch = meta.string(KEY_ARCH)?;
            if !GEMMA_ARCHS.contains(&arch) {
                return Err(unsupported(
                    &meta,
                    KEY_ARCH,
                    arch,
                    "gemma, gemma2, gemma3 (for tokenizer.ggml.model = \"llama\")",
                ));
            }
            let unk = ids.unk.map_or("<unk>", |id| tokens[id as usize]);
            (
                sentencepiece::build_gemma(&meta, &tokens, unk)?,
                Family::SentencePiece,
            )
        }
        other => return Err(unsupported(&meta, KEY_MODEL, other, "gpt2, llama")),
    };
    add_gguf_added_tokens(&mut inner, &meta, &tokens, types.as_deref(), &ids, family)?;
    // transformers: a SentencePiece ("llama") vocabulary adds BOS unless the
    // file says otherwise; GPT-2 style vocabularies do not.
    let add_bos = meta
        .opt_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(kind == "llama");
    let add_eos = meta
        .opt_bool("tokenizer.ggml.add_eos_token")?
        .unwrap_or(false);
    let with_token = |id: u32| (id, tokens[id as usize].to_string());
    let bos = ids.bos.map(with_token);
    let eos_main = ids.eos.map(with_token);
    let template_bos = bos.clone().filter(|_| add_bos);
    let template_eos = eos_main.clone().filter(|_| add_eos);
    if let Some(processor) = post_processor(template_bos.as_ref(), template_eos.as_ref())
        .map_err(|e| build_error(&meta, format!("BOS/EOS template: {e}")))?
    {
        inner.with_post_processor(Some(processor));
    }
    let mut eos: Vec<(u32, String)> = eos_main.into_iter().collect();
    if let Some(eot) = ids.eot.filter(|id| Some(*id) != ids.eos) {
        eos.push(with_token(eot));
    }
    Ok(GgufTokenizer {
        inner,
        bos,
        eos,
        chat_template: meta.opt_string(KEY_CHAT_TEMPLATE)?.map(str::to_string),
    })
}

fn unsupported(meta: &Meta<'_>, key: &str, value: &str, supported: &str) -> TokenizeError {
    TokenizeError::UnsupportedGguf {
        path: meta.path().to_path_buf(),
        key: key.to_string(),
        value: value.to_string(),
        supported: supported.to_string(),
    }
}

fn build_error(meta: &Meta<'_>, message: String) -> TokenizeError {
    TokenizeError::Build {
        path: meta.path().to_path_buf(),
        message,
    }
}

/// Whether a raw GGUF token can be added whole. In a byte-level vocabulary
/// every real token is spelled in the byte alphabet; a token marked control
/// that is not is a llama.cpp mislabel, and adding it would create an id past
/// the model's embedding table (transformers skips it too).
fn addable(family: Family, token: &str) -> bool {
    family == Family::SentencePiece || token.chars().all(byte_level::is_byte_char)
}

/// Adds, in transformers' order: the BOS/EOS/UNK/PAD tokens and every
/// control token as special tokens, then user-defined tokens (`\n\n`, `<think>`)
/// as plain added tokens, but only those the vocabulary spells the same way.
/// Without this they would be cut into pieces instead of matched whole.
fn add_gguf_added_tokens(
    inner: &mut tokenizers::Tokenizer,
    meta: &Meta<'_>,
    tokens: &[&str],
    types: Option<&[i32]>,
    ids: &SpecialIds,
    family: Family,
) -> Result<(), TokenizeError> {
    let mut seen = HashSet::new();
    let mut special = Vec::new();
    let named = [ids.bos, ids.eos, ids.unk, ids.pad];
    let control = types
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL);
    let special_ids = named
        .into_iter()
        .flatten()
        .chain(control.map(|(i, _)| i as u32));
    for id in special_ids {
        let token = tokens[id as usize];
        if addable(family, token) && seen.insert(token) {
            special.push(AddedToken::from(token, true).normalized(false));
        }
    }
    inner
        .add_special_tokens(special)
        .map_err(|e| build_error(meta, format!("adding special tokens: {e}")))?;
    let user_defined: Vec<AddedToken> = types
        .into_iter()
        .flatten()
        .zip(tokens)
        .filter(|(t, token)| **t == TOKEN_TYPE_USER_DEFINED && inner.token_to_id(token).is_some())
        .map(|(_, token)| AddedToken::from(*token, false).normalized(false))
        .collect();
    inner
        .add_tokens(user_defined)
        .map_err(|e| build_error(meta, format!("adding user-defined tokens: {e}")))?;
    Ok(())
}

/// The BOS/EOS template transformers' `update_post_processor` writes:
/// `[bos] $A:0 [eos]` and `[bos] $A:0 [eos] [bos]:1 $B:1 [eos]:1`. Built
/// through serde so that token strings containing `:` or `$` stay intact.
fn post_processor(
    bos: Option<&(u32, String)>,
    eos: Option<&(u32, String)>,
) -> Result<Option<PostProcessorWrapper>, serde_json::Error> {
    use serde_json::json;
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    let special = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let sequence = |s: &str, type_id: u32| json!({"Sequence": {"id": s, "type_id": type_id}});
    let mut single = Vec::new();
    let mut pair = Vec::new();
    for (seq, type_id) in [("A", 0), ("B", 1)] {
        let pieces: Vec<_> = bos
            .map(|(_, t)| special(t, type_id))
            .into_iter()
            .chain([sequence(seq, type_id)])
            .chain(eos.map(|(_, t)| special(t, type_id)))
            .collect();
        if type_id == 0 {
            single.extend(pieces.iter().cloned());
        }
        pair.extend(pieces);
    }
    let mut special_tokens = serde_json::Map::new();
    for (id, t) in bos.into_iter().chain(eos) {
        special_tokens.insert(t.clone(), json!({"id": t, "ids": [id], "tokens": [t]}));
    }
    let value = json!({
        "type": "TemplateProcessing",
        "single": single,
        "pair": pair,
        "special_tokens": special_tokens,
    });
    serde_json::from_value(value).map(Some)
}
