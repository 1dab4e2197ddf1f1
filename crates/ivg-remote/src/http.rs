//! JSON over HTTP/1.1 to one engine: bounded concurrency, a timeout per
//! call, and retries with exponential backoff for transient failures (every
//! call this crate makes is idempotent).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::{RemoteError, RemoteSpec};

/// Largest response body read (a top-k over a whole vocabulary is ~10 MB).
const BODY_LIMIT: u64 = 256 << 20;
/// First backoff; each retry waits four times longer.
const BACKOFF: Duration = Duration::from_millis(100);

pub(crate) struct Http {
    pub(crate) url: String,
    agent: ureq::Agent,
    retries: u32,
    slots: Slots,
    /// `Bearer KEY` when the spec names a key variable; never printed.
    authorization: Option<String>,
}

impl Http {
    pub(crate) fn new(spec: &RemoteSpec) -> Result<Self, RemoteError> {
        let url = spec.validate()?;
        let authorization = spec.api_key()?.map(|key| format!("Bearer {key}"));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(spec.timeout()))
            .build()
            .new_agent();
        Ok(Self {
            url,
            agent,
            retries: spec.retries,
            slots: Slots::new(spec.max_concurrent),
            authorization,
        })
    }

    /// `GET path`, parsed as JSON.
    pub(crate) fn get(&self, call: &'static str, path: &str) -> Result<Value, RemoteError> {
        self.with_retries(call, || self.once(call, path, None))
    }

    /// `POST path` with a JSON body, parsed as JSON.
    pub(crate) fn post(
        &self,
        call: &'static str,
        path: &str,
        body: &Value,
    ) -> Result<Value, RemoteError> {
        let bytes = body.to_string().into_bytes();
        self.with_retries(call, || self.once(call, path, Some(bytes.clone())))
    }

    fn with_retries(
        &self,
        call: &'static str,
        mut attempt: impl FnMut() -> Result<Value, RemoteError>,
    ) -> Result<Value, RemoteError> {
        let _slot = self.slots.take();
        let mut wait = BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt() {
                Err(e) if e.is_transient() && tries <= self.retries => {
                    std::thread::sleep(wait);
                    wait *= 4;
                }
                Err(RemoteError::Transport { url, problem, .. }) => {
                    return Err(RemoteError::Transport {
                        url,
                        call,
                        attempts: tries,
                        problem,
                    })
                }
                other => return other,
            }
        }
    }

    fn once(
        &self,
        call: &'static str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Value, RemoteError> {
        let target = format!("{}{path}", self.url);
        let transport = |e: ureq::Error| RemoteError::Transport {
            url: self.url.clone(),
            call,
            attempts: 1,
            problem: e.to_string(),
        };
        let auth = self.authorization.as_deref();
        let response = match body {
            None => {
                let mut request = self.agent.get(&target);
                if let Some(auth) = auth {
                    request = request.header("authorization", auth);
                }
                request.call()
            }
            Some(b) => {
                let mut request = self
                    .agent
                    .post(&target)
                    .header("content-type", "application/json");
                if let Some(auth) = auth {
                    request = request.header("authorization", auth);
                }
                request.send(b)
            }
        }
        .map_err(transport)?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_vec()
            .map_err(transport)?;
        let text = String::from_utf8_lossy(&bytes);
        if status != 200 {
            return Err(RemoteError::Status {
                url: self.url.clone(),
                call,
                status,
                body: clip(&text),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| RemoteError::Malformed {
            url: self.url.clone(),
            call,
            problem: format!("not JSON ({e}): {}", clip(&text)),
        })
    }

    /// A protocol violation found in an answer to `call`.
    pub(crate) fn malformed(&self, call: &'static str, problem: impl Into<String>) -> RemoteError {
        RemoteError::Malformed {
            url: self.url.clone(),
            call,
            problem: problem.into(),
        }
    }
}

/// The first 300 characters of a body, for error messages.
fn clip(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// A counting semaphore: at most `max` calls in flight.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

struct Slot<'a>(&'a Slots);

impl Slots {
    fn new(max: usize) -> Self {
        Self {
            free: Mutex::new(max),
            freed: Condvar::new(),
        }
    }

    fn take(&self) -> Slot<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.freed.notify_one();
    }
}
