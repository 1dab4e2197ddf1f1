//! Prompt templates: the text a model reads, with `{prompt}` marking where
//! the prompt goes (a training-free pair is one model under two templates,
//! method.md). A template without the placeholder would silently drop the
//! prompt, so one cannot be built or deserialized.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// A prompt template that contains [`PromptTemplate::PLACEHOLDER`].
/// Serialized as a plain string; the default is `{prompt}` (the prompt as is).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PromptTemplate(String);

impl PromptTemplate {
    pub const PLACEHOLDER: &'static str = "{prompt}";

    /// Refuses a template without `{prompt}`, naming it.
    pub fn new(template: impl Into<String>) -> Result<Self, RuntimeError> {
        let template = template.into();
        if !template.contains(Self::PLACEHOLDER) {
            return Err(RuntimeError::Template { template });
        }
        Ok(Self(template))
    }

    /// The text with every `{prompt}` replaced by `prompt`.
    pub fn render(&self, prompt: &str) -> String {
        self.0.replace(Self::PLACEHOLDER, prompt)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for PromptTemplate {
    fn default() -> Self {
        Self(Self::PLACEHOLDER.to_string())
    }
}

impl fmt::Display for PromptTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PromptTemplate {
    type Error = RuntimeError;

    fn try_from(template: String) -> Result<Self, RuntimeError> {
        Self::new(template)
    }
}

impl FromStr for PromptTemplate {
    type Err = RuntimeError;

    fn from_str(template: &str) -> Result<Self, RuntimeError> {
        Self::new(template)
    }
}

impl From<PromptTemplate> for String {
    fn from(t: PromptTemplate) -> String {
        t.0
    }
}

impl AsRef<str> for PromptTemplate {
    fn as_ref(&self) -> &str {
        &self.0
    }
}
