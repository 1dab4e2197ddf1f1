//! ivg-value: value functions of partial responses (method.md, "Value functions").
//!
//! - [`ImplicitValue`]: `V_i(x, y<=t) = beta_v * sum_{k<=t} sum_i w_i [log pi_tuned_i(y_k|s_k) - log pi_ref(y_k|s_k)]`,
//!   from one or several tuned/reference pairs; it can also guide token-wise
//!   sampling with the logit offsets `sum_i w_i (l_tuned_i - l_ref_i)` (EFTi).
//! - [`QValue`]: the explicit value `V_e(x, y<=t) = beta_v * Q(s_t, y_t)` of a
//!   vocabulary-sized Q head, which can also guide token-wise (EFTe);
//! - [`ScalarValue`]: a scalar head read at the last token (`V = head(h_t)`);
//! - [`ClassifierValue`]: a sequence reward model (BERT classifier) on the text.
//!
//! Every value function keeps its own models' decode states, row-aligned with the
//! decoder's rows: it is told each emitted token ([`ValueFunction::observe`]),
//! reordered with the beams, grown by the rows of requests that join a running
//! batch ([`ValueFunction::append`]), and asked for values at chunk boundaries.
//! Used for chunk ranking only, it buffers the chunk and scores its `L` new
//! tokens in one forward; used for guidance, it steps every token and its value
//! is a by-product.

mod classifier;
mod explicit;
mod implicit;
pub mod runner;
mod scalar;
mod text_level;

use candle_core::Tensor;

pub use classifier::ClassifierValue;
pub use explicit::QValue;
pub use implicit::{ImplicitPair, ImplicitValue};
pub use runner::GuideRunner;
pub use scalar::ScalarValue;
pub use text_level::{wrap_if_needed, TextLevelValue};

#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error(transparent)]
    Model(#[from] ivg_models::ModelError),
    #[error(transparent)]
    Tokenize(#[from] ivg_tokenize::TokenizeError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error("value function `{0}` used before begin()")]
    NotStarted(String),
    #[error("value function `{name}`: {problem}")]
    Invalid { name: String, problem: String },
}

/// How a value function consumes tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// One forward per token: needed when it guides token-wise sampling.
    Stepped,
    /// Tokens buffered and scored in one forward per chunk boundary.
    Chunked,
}

/// A scorer of partial responses with its own row-aligned state.
pub trait ValueFunction: Send {
    fn name(&self) -> &str;

    /// Starts one row per prompt (the prompt *text*: each value function applies
    /// its own template and tokenizer).
    fn begin(&mut self, prompts: &[String]) -> Result<(), ValueError>;

    /// Adds one row per prompt after the existing rows, as `begin` does for an
    /// empty set, so a request can join a batch mid-generation. Chunk tokens
    /// still buffered for existing rows are scored first (all live rows keep
    /// buffers of equal length).
    fn append(&mut self, prompts: &[String]) -> Result<(), ValueError>;

    /// Row `i` continues as former row `order[i]` (repeats fork a row). An
    /// empty `order` drops every row (the engine's last request finished):
    /// `values` is then empty, `observe` of no tokens does nothing, and
    /// `append` starts rows again as `begin` would.
    fn reorder(&mut self, order: &[usize]) -> Result<(), ValueError>;

    /// The token emitted by every row; rows with `live[r] == false` have ended
    /// and their token is ignored.
    fn observe(&mut self, tokens: &[u32], live: &[bool]) -> Result<(), ValueError>;

    /// The value of every row's response so far, including its last observed token.
    fn values(&mut self) -> Result<Vec<f64>, ValueError>;

    /// Unscaled logit offsets `(rows, vocab)` for the next token, when this value
    /// function guides token-wise sampling (it must then be [`Feed::Stepped`]).
    fn guidance(&self) -> Result<Option<Tensor>, ValueError> {
        Ok(None)
    }

    /// Vocabulary the offsets of [`ValueFunction::guidance`] index.
    fn tokenizer(&self) -> Option<&ivg_tokenize::Tokenizer> {
        None
    }
}

/// Encodes `template` (with `{prompt}` replaced) for one model.
pub fn encode_prompt(
    tokenizer: &ivg_tokenize::Tokenizer,
    template: &str,
    prompt: &str,
) -> Result<Vec<u32>, ValueError> {
    Ok(tokenizer.encode(&template.replace("{prompt}", prompt), true)?)
}

/// Value scales must be finite (NaN or infinity would corrupt every ranking).
pub(crate) fn check_beta_v(name: &str, beta_v: f64) -> Result<(), ValueError> {
    if beta_v.is_finite() {
        return Ok(());
    }
    Err(ValueError::Invalid {
        name: name.to_string(),
        problem: format!("beta_v must be finite, got {beta_v}"),
    })
}

/// `observe` must get one token and one liveness flag per row.
pub(crate) fn check_rows(
    name: &str,
    rows: usize,
    tokens: &[u32],
    live: &[bool],
) -> Result<(), ValueError> {
    if tokens.len() != rows || live.len() != rows {
        return Err(ValueError::Invalid {
            name: name.to_string(),
            problem: format!(
                "observe got {} tokens and {} flags for {rows} rows",
                tokens.len(),
                live.len()
            ),
        });
    }
    Ok(())
}

/// Right-pads rows of different lengths with their own last token (or 0) so
/// that they can be appended as one batch; returns the padded rows and each
/// row's real length.
pub(crate) fn pad_chunks(chunks: &[Vec<u32>]) -> (Vec<Vec<u32>>, Vec<usize>) {
    let n = chunks.iter().map(Vec::len).max().unwrap_or(0);
    let lens = chunks.iter().map(Vec::len).collect();
    let padded = chunks
        .iter()
        .map(|c| {
            let mut c = c.clone();
            let fill = c.last().copied().unwrap_or(0);
            c.resize(n, fill);
            c
        })
        .collect();
    (padded, lens)
}
