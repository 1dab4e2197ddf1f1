//! Errors of a remote engine: every one names the engine's URL and the call
//! that failed, so a message read in a server log says where to look.

/// What went wrong with one call.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The spec itself (a URL that is not `http://host:port`, a zero limit).
    #[error("remote engine `{url}`: invalid `{field}`: {problem}")]
    Spec {
        url: String,
        field: &'static str,
        problem: String,
    },
    /// No answer: refused connection, reset, timeout (after the retries).
    #[error("remote engine {url}: {call} failed after {attempts} attempt(s): {problem}")]
    Transport {
        url: String,
        call: &'static str,
        attempts: u32,
        problem: String,
    },
    /// An answer with an error status.
    #[error("remote engine {url}: {call} answered HTTP {status}: {body}")]
    Status {
        url: String,
        call: &'static str,
        status: u16,
        body: String,
    },
    /// A call refused before it was sent (an empty prefix, one that would
    /// overflow the engine's context).
    #[error("remote engine {url}: {call} not sent: {problem}")]
    Refused {
        url: String,
        call: &'static str,
        problem: String,
    },
    /// An answer that is not what the protocol promises (bad JSON, a missing
    /// field, fewer logprobs than asked for, an id outside the vocabulary).
    #[error("remote engine {url}: {call} answered something unexpected: {problem}")]
    Malformed {
        url: String,
        call: &'static str,
        problem: String,
    },
}

impl RemoteError {
    /// Whether trying the same call again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Spec { .. } | Self::Refused { .. } | Self::Malformed { .. } => false,
        }
    }
}
