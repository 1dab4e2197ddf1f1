//! The one shared layer set: every architecture is assembled from these.

mod attention;
mod linear;
mod mlp;
mod norm;
mod q8;
mod rope;
mod sdpa;

pub use attention::{Attention, AttentionInputs, AttentionShape};
pub(crate) use linear::normal_init;
pub use linear::{Embedding, Linear, LinearWeight, INIT_STD};
pub use mlp::{activate, Mlp};
pub use norm::Norm;
pub use q8::{Q8Kernel, Q8Matrix, Q8_BLOCK};
pub use rope::Rope;
