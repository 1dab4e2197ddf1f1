//! The one configuration type of guided decoding (method.md, "The method
//! matrix"): a token-level policy and a chunk-level ranking, plus the beam
//! shape. Every method is a value of [`GuidanceConfig`]; [`Method`] names the
//! paper's rows and expands into it.

use serde::{Deserialize, Serialize};

use crate::sampling::SamplingConfig;
use crate::DecodeError;

/// How each next token is drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenPolicy {
    /// Sample from `pi_base`.
    Base,
    /// EFTi: `l_base + beta * sum_i w_i (l_tuned_i - l_ref_i)`.
    Implicit { beta: f64 },
    /// EFTe: `l_base + beta * Q(s_t, .)`.
    Explicit { beta: f64 },
}

/// Which value ranks candidates at chunk boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkRanking {
    None,
    Implicit,
    Explicit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuidanceConfig {
    pub token: TokenPolicy,
    pub chunk: ChunkRanking,
    /// Beam width `W`: survivors kept per prompt at each boundary.
    pub width: usize,
    /// Successors `K` sampled from each survivor.
    pub successors: usize,
    /// Chunk length `L`; `None` is infinity (rank once, at the end: best-of-N).
    pub chunk_len: Option<usize>,
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    pub seed: u64,
    /// A row also ends once its response text (base tokenizer) contains one of
    /// these, e.g. `["\n"]` for one-line summaries; stop ids are given per run.
    #[serde(default)]
    pub stop_strings: Vec<String>,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> DecodeError {
    DecodeError::Config {
        field,
        problem: problem.into(),
    }
}

impl GuidanceConfig {
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.width == 0 {
            return Err(invalid("width", "W must be at least 1, got 0"));
        }
        if self.successors == 0 {
            return Err(invalid("successors", "K must be at least 1, got 0"));
        }
        if self.chunk_len == Some(0) {
            return Err(invalid(
                "chunk_len",
                "L must be at least 1 (omit it for infinity), got 0",
            ));
        }
        if self.max_new_tokens == 0 {
            return Err(invalid("max_new_tokens", "must be at least 1, got 0"));
        }
        if let TokenPolicy::Implicit { beta } | TokenPolicy::Explicit { beta } = self.token {
            if !beta.is_finite() {
                return Err(invalid("beta", format!("must be finite, got {beta}")));
            }
        }
        if self.stop_strings.iter().any(String::is_empty) {
            return Err(invalid(
                "stop_strings",
                "an empty stop string would end every row at once",
            ));
        }
        if self.chunk == ChunkRanking::None && self.width * self.successors > 1 {
            return Err(invalid(
                "chunk",
                "W*K > 1 needs a chunk ranking (implicit or explicit) to choose among candidates",
            ));
        }
        Ok(self.sampling.validate()?)
    }

    /// Rows decoded per prompt.
    pub fn rows_per_prompt(&self) -> usize {
        self.width * self.successors
    }
}

/// The rows of the paper's method matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Base,
    #[serde(rename = "boni")]
    BoNi,
    #[serde(rename = "bone")]
    BoNe,
    #[serde(rename = "efti")]
    EftI,
    #[serde(rename = "efte")]
    EftE,
    #[serde(rename = "cbsi")]
    CbsI,
    #[serde(rename = "cbse")]
    CbsE,
    #[serde(rename = "efti+cbsi")]
    EftICbsI,
    Ivg,
}

impl Method {
    pub const ALL: [Method; 9] = [
        Self::Base,
        Self::BoNi,
        Self::BoNe,
        Self::EftI,
        Self::EftE,
        Self::CbsI,
        Self::CbsE,
        Self::EftICbsI,
        Self::Ivg,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            Self::Base => "base",
            Self::BoNi => "boni",
            Self::BoNe => "bone",
            Self::EftI => "efti",
            Self::EftE => "efte",
            Self::CbsI => "cbsi",
            Self::CbsE => "cbse",
            Self::EftICbsI => "efti+cbsi",
            Self::Ivg => "ivg",
        }
    }

    pub fn from_name(s: &str) -> Result<Self, DecodeError> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s.to_ascii_lowercase())
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(Method::name).collect();
                invalid(
                    "method",
                    format!("unknown method `{s}` (known: {})", known.join(", ")),
                )
            })
    }

    /// The configuration of this method with the given beam shape and `beta`;
    /// BoN uses `W = 1, K = width * successors, L = infinity` (method.md).
    pub fn config(&self, shape: &GuidanceConfig, beta: f64) -> GuidanceConfig {
        use ChunkRanking as C;
        use TokenPolicy as T;
        let (token, chunk) = match self {
            Self::Base => (T::Base, C::None),
            Self::BoNi => (T::Base, C::Implicit),
            Self::BoNe => (T::Base, C::Explicit),
            Self::EftI => (T::Implicit { beta }, C::None),
            Self::EftE => (T::Explicit { beta }, C::None),
            Self::CbsI => (T::Base, C::Implicit),
            Self::CbsE => (T::Base, C::Explicit),
            Self::EftICbsI => (T::Implicit { beta }, C::Implicit),
            Self::Ivg => (T::Implicit { beta }, C::Explicit),
        };
        let mut c = GuidanceConfig {
            token,
            chunk,
            ..shape.clone()
        };
        match self {
            Self::Base | Self::EftI | Self::EftE => {
                c.width = 1;
                c.successors = 1;
                c.chunk_len = None;
            }
            Self::BoNi | Self::BoNe => {
                c.successors = shape.width * shape.successors;
                c.width = 1;
                c.chunk_len = None;
            }
            _ => {}
        }
        c
    }
}
