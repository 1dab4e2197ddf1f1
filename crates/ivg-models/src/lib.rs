//! ivg-models: model backends for ivg. Knows nothing about decoding.
//!
//! Our own implementations of GPT-2, the Llama family (Llama, Mistral, Qwen2,
//! SmolLM2), Gemma 3 and BERT over one shared layer set ([`layers`]), loaded
//! from Hugging Face safetensors or GGUF ([`weights`], [`gguf`]) under HF
//! tensor names, with decoding state kept outside the model ([`state`]).

pub mod arch;
pub mod config;
pub mod error;
pub mod gguf;
pub mod heads;
pub mod hf_config;
pub mod info;
pub mod layers;
pub mod loader;
pub mod model;
pub mod numerics;
pub mod pool;
pub mod state;
pub mod weights;

pub use config::{DecoderConfig, ModelConfig};
pub use error::{ModelError, Result};
pub use loader::{load_bert, load_causal_lm, open, LoadOptions, ModelSource};
pub use model::{CausalLm, ForwardStats, LogitsSpan, ScalarLm};
pub use state::DecodeState;
pub use weights::{QuantPolicy, Weights};
