//! Is the engine's vocabulary the local one? Token-level guidance adds the
//! guides' log-probabilities to the base's by token id, so the ids must mean
//! the same strings on both sides; otherwise guidance must go through text.
//! Checked through the engine's own API: its vocabulary size, its ids for a
//! probe corpus, and the text of ids spread over the whole vocabulary.

use ivg_tokenize::Tokenizer;

use crate::{RemoteEngine, RemoteError};

/// Texts whose ids must agree: prose, digits, code, whitespace runs,
/// non-ASCII text and chat markup.
pub const PROBE: [&str; 6] = [
    "I watched this film last night and, honestly, it was better than I expected.",
    "In 1999 it cost $12.50; by 2024 the price was 3,141.59 (an increase of 25032%).",
    "fn main() {\n    let xs = vec![1, 2, 3];\n    println!(\"{:?}\", xs);\n}\n",
    "  leading spaces,\t\ttabs,\n\n\nnewlines   and    runs.",
    "Ünïcödé: naïve café, Zürich, 東京, Москва, emoji 🎬🍿 — done.",
    "<|im_start|>user\nReview Casablanca.<|im_end|>\n<|im_start|>assistant\n",
];

/// The verdict of [`RemoteEngine::compare_vocabulary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vocabulary {
    /// Same size, same ids for the probe, same text for every sampled id.
    Same,
    /// The first difference found, in words.
    Different { reason: String },
}

impl RemoteEngine {
    /// The engine's vocabulary size: llama.cpp's `/v1/models`
    /// `data[0].meta.n_vocab` (both protocols). vLLM and SGLang report
    /// none; then this is a `Refused` error saying so (and
    /// [`RemoteEngine::compare_vocabulary`] checks without it).
    pub fn vocab_size(&self) -> Result<usize, RemoteError> {
        self.reported_vocab_size()?
            .ok_or_else(|| RemoteError::Refused {
                url: self.url().to_string(),
                call: "vocabulary size",
                problem: "the engine's /v1/models reports no vocabulary size \
                          (vLLM and SGLang do not)"
                    .into(),
            })
    }

    /// Compares the engine's vocabulary with `local`'s: sizes (where the
    /// engine reports one), the ids of [`PROBE`], and the text of `samples`
    /// ids spread evenly over the vocabulary (one `/detokenize` each) plus
    /// the last id and the local special tokens. Without a reported size,
    /// an engine vocabulary that extends the local one past its end goes
    /// unseen here; ids past the local end are then the caller's to reject.
    pub fn compare_vocabulary(
        &self,
        local: &Tokenizer,
        samples: usize,
    ) -> Result<Vocabulary, RemoteError> {
        let ours = local.vocab_size();
        if let Some(theirs) = self.reported_vocab_size()? {
            if theirs != ours {
                return Ok(different(format!(
                    "the engine has {theirs} tokens, `{}` has {ours}",
                    local.name()
                )));
            }
        }
        for text in PROBE {
            let mine = local.encode(text, false).map_err(|e| self.local_error(e))?;
            if self.tokenize(text, false)? != mine {
                return Ok(different(format!("the engine splits {text:?} differently")));
            }
        }
        let step = (ours / samples.max(1)).max(1);
        let mut ids: Vec<u32> = (0..ours).step_by(step).map(|i| i as u32).collect();
        ids.extend(ours.checked_sub(1).map(|last| last as u32));
        ids.extend(local.bos_id());
        ids.extend(local.eos_ids());
        for id in ids {
            let mine = local
                .decode(&[id], false)
                .map_err(|e| self.local_error(e))?;
            let engine = self.detokenize(&[id])?;
            if engine != mine {
                return Ok(different(format!(
                    "token {id} is {engine:?} to the engine and {mine:?} to `{}`",
                    local.name()
                )));
            }
        }
        Ok(Vocabulary::Same)
    }

    fn local_error(&self, e: ivg_tokenize::TokenizeError) -> RemoteError {
        RemoteError::Refused {
            url: self.url().to_string(),
            call: "vocabulary check",
            problem: format!("the local tokenizer failed: {e}"),
        }
    }
}

fn different(reason: String) -> Vocabulary {
    Vocabulary::Different { reason }
}
