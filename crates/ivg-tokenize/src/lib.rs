//! ivg's tokenizer facade over Hugging Face `tokenizers`.
//!
//! * [`Tokenizer`] loads a `tokenizer.json` (+ `tokenizer_config.json`) or
//!   rebuilds the tokenizer a GGUF file embeds (byte-level BPE for SmolLM2,
//!   SentencePiece-as-BPE for Gemma 3), matching transformers' ids
//!   (`tests/fixtures/reference_ids.json`, written by
//!   `scripts/reference/tokenizer_refs.py`).
//! * [`Tokenizer::apply_chat_template`] renders Hugging Face chat templates.
//! * [`StreamingDetokenizer`] turns generated ids into text as they arrive.
//! * [`check_same_vocab`] guards value guidance across two models.

mod chat;
mod config;
mod error;
mod gguf;
mod pyjson;
mod stream;
mod tokenizer;
mod vocab;

pub use chat::ChatMessage;
pub use error::{TokenizeError, VocabMismatch};
pub use stream::StreamingDetokenizer;
pub use tokenizer::Tokenizer;
pub use vocab::check_same_vocab;
