//! What a guide set is made of (method.md, "Value functions"): implicit
//! tuned/reference pairs and an optional explicit value model, as a serde
//! spec that a TOML/JSON file, a server preset or the CLI's flags all build.
//!
//! ```toml
//! beta_v = 1.0
//! [[implicit]]                 # a training-free pair: one model, two templates
//! tuned = "asset:smollm2"
//! tuned_template = "A positive review: {prompt}"
//! [explicit]
//! kind = "classifier"          # or "q" / "scalar" (with `template`)
//! model = { path = "models/sentiment", device = "cpu" }
//! label = 1
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{ModelRef, PromptTemplate, RuntimeError};

fn one() -> f64 {
    1.0
}

fn positive_label() -> usize {
    1
}

/// The models of one guide set; [`GuideSpec::validate`] checks the numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuideSpec {
    /// Tuned/reference pairs whose weighted log-ratios sum into the implicit value.
    #[serde(default)]
    pub implicit: Vec<PairSpec>,
    /// The explicit value model, where there is one.
    #[serde(default)]
    pub explicit: Option<ExplicitSpec>,
    /// Scale of the chunk-level values (implicit and explicit).
    #[serde(default = "one")]
    pub beta_v: f64,
}

impl Default for GuideSpec {
    fn default() -> Self {
        Self {
            implicit: Vec::new(),
            explicit: None,
            beta_v: 1.0,
        }
    }
}

/// One tuned/reference pair of the implicit value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSpec {
    pub tuned: ModelRef,
    /// Defaults to `tuned`: a training-free pair is one model under two
    /// templates, and it is loaded once.
    #[serde(default)]
    pub reference: Option<ModelRef>,
    #[serde(default)]
    pub tuned_template: PromptTemplate,
    #[serde(default)]
    pub reference_template: PromptTemplate,
    /// `w_i` of `sum_i w_i [log pi_tuned_i - log pi_ref_i]`.
    #[serde(default = "one")]
    pub weight: f64,
}

impl PairSpec {
    /// A pair of `tuned` with itself (both templates `{prompt}`, weight 1).
    pub fn new(tuned: ModelRef) -> Self {
        Self {
            tuned,
            reference: None,
            tuned_template: PromptTemplate::default(),
            reference_template: PromptTemplate::default(),
            weight: 1.0,
        }
    }

    /// The reference model: `reference`, else the tuned model itself.
    pub fn reference(&self) -> &ModelRef {
        self.reference.as_ref().unwrap_or(&self.tuned)
    }
}

/// The explicit value model, tagged by `kind`; each kind takes the fields
/// its value function reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExplicitSpec {
    /// A causal LM whose `lm_head` is a vocabulary-sized Q head: `Q(s_t, .)`;
    /// it can also guide token-wise (EFTe).
    Q {
        model: ModelRef,
        #[serde(default)]
        template: PromptTemplate,
    },
    /// A causal backbone with a one-label `score` head read at the last token.
    Scalar {
        model: ModelRef,
        #[serde(default)]
        template: PromptTemplate,
    },
    /// A BERT sequence classifier scoring the whole text (prompt and response
    /// as decoded by the base tokenizer); rewards the margin of `label`.
    Classifier {
        model: ModelRef,
        #[serde(default = "positive_label")]
        label: usize,
    },
}

impl ExplicitSpec {
    pub fn model(&self) -> &ModelRef {
        match self {
            Self::Q { model, .. } | Self::Scalar { model, .. } | Self::Classifier { model, .. } => {
                model
            }
        }
    }

    /// `q`, `scalar` or `classifier`, as written in a spec.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Q { .. } => "q",
            Self::Scalar { .. } => "scalar",
            Self::Classifier { .. } => "classifier",
        }
    }
}

fn finite(field: String, value: f64) -> Result<(), RuntimeError> {
    if value.is_finite() {
        return Ok(());
    }
    Err(RuntimeError::spec(
        field,
        format!("must be finite, got {value}"),
    ))
}

impl GuideSpec {
    /// The first model the set names (a tuned model, else the explicit
    /// value's): whose tokenizer a remote base without its own borrows.
    pub fn first_model(&self) -> Option<&ModelRef> {
        self.implicit
            .first()
            .map(|p| &p.tuned)
            .or(self.explicit.as_ref().map(ExplicitSpec::model))
    }

    /// Checks what serde cannot: finite scales and weights, non-empty paths.
    /// (Templates are checked as they are built.)
    pub fn validate(&self) -> Result<(), RuntimeError> {
        finite("beta_v".into(), self.beta_v)?;
        for (i, pair) in self.implicit.iter().enumerate() {
            finite(format!("implicit[{i}].weight"), pair.weight)?;
            non_empty(format!("implicit[{i}].tuned"), &pair.tuned)?;
            if let Some(r) = &pair.reference {
                non_empty(format!("implicit[{i}].reference"), r)?;
            }
        }
        if let Some(e) = &self.explicit {
            non_empty("explicit.model".into(), e.model())?;
        }
        Ok(())
    }

    /// Reads a spec from a TOML file, or JSON when the name ends in `.json`,
    /// and validates it; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self, RuntimeError> {
        let spec: Self = crate::read_spec_file(path, "guide spec")?;
        spec.validate().map_err(|error| RuntimeError::InFile {
            path: path.to_path_buf(),
            error: Box::new(error),
        })?;
        Ok(spec)
    }
}

fn non_empty(field: String, model: &ModelRef) -> Result<(), RuntimeError> {
    if model.path.as_os_str().is_empty() {
        return Err(RuntimeError::spec(field, "the model path is empty"));
    }
    Ok(())
}
