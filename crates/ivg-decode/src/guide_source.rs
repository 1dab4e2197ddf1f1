//! Guide sets seen from the step-wise engine: a loaded set of guide models
//! (tuned/reference pairs, an explicit value model) that builds, on demand, a
//! value function for one role fed one way. The engine keeps one value
//! function per (guide set, role, feed) that its live requests use, and puts
//! the rows of every such request into it, so requests sharing a guide set
//! share one forward per guide model per step.

use ivg_value::{Feed, ValueFunction};

use crate::DecodeError;

/// Which value a function plays: the implicit (tuned/reference log-ratio) or
/// the explicit (trained prefix scorer) value of method.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueRole {
    Implicit,
    Explicit,
}

impl ValueRole {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Implicit => "implicit",
            Self::Explicit => "explicit",
        }
    }
}

/// A loaded guide set, shareable across threads (models behind `Arc`s).
pub trait GuideSource: Send + Sync {
    /// The set's name (a server preset, `default` on the command line).
    fn name(&self) -> &str;

    /// Whether the set has a model for `role`.
    fn has(&self, role: ValueRole) -> bool;

    /// A fresh value function (no rows yet) for `role`, fed as `feed`:
    /// [`Feed::Stepped`] when it guides token-wise, [`Feed::Chunked`] when it
    /// only ranks chunks. A chunk-only value whose vocabulary differs from the
    /// base model's is expected to come wrapped to score at text level.
    fn build(&self, role: ValueRole, feed: Feed) -> Result<Box<dyn ValueFunction>, DecodeError>;
}
