//! Backbones returning hidden states; heads live in [`crate::heads`].

pub mod bert;
pub mod gpt2;
pub mod llama;

use candle_core::Tensor;

use crate::error::Result;
use crate::layers::Embedding;
use crate::state::DecodeState;

/// A causal transformer body: token ids in, final hidden states out.
pub trait Backbone: Send + Sync {
    /// `ids: (batch, seq)` u32 -> `(batch, seq, hidden)`, appending to `state`.
    fn forward(&self, ids: &Tensor, state: &mut DecodeState) -> Result<Tensor>;
    fn hidden_size(&self) -> usize;
    fn num_layers(&self) -> usize;
    /// Longest sequence (padding included) the positions support.
    fn context_length(&self) -> usize;
    /// Input embeddings, for a tied LM head.
    fn embeddings(&self) -> &Embedding;
}
