//! ivg-server: guided generation as an OpenAI-compatible HTTP service.
//!
//! - `/v1/models`, `/v1/completions`, `/v1/chat/completions` (streamed as
//!   server-sent events ending in `data: [DONE]`), `/tokenize`,
//!   `/detokenize`, `/health` (503 while loading), `/metrics` (Prometheus).
//! - Every request picks a preset (a guide set with default guidance) through
//!   `model` and may override the guidance in an `ivg` object
//!   (`extra_body={"ivg": {"method": "ivg", "width": 4}}` with the openai
//!   client). Requests of every method decode together on one step-wise
//!   engine (continuous batching), on a thread of its own ([`worker`]).
//! - Validation happens at the edge ([`validate`]) and every error leaves as
//!   the OpenAI error body with its status ([`error`]).
//! - SIGTERM (or Ctrl-C) stops admitting, lets in-flight requests finish, and
//!   returns.

pub mod config;
pub mod error;
pub mod metrics;
mod routes;
pub mod text;
pub mod validate;
pub mod worker;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock};

use ivg_runtime::{GuideSet, PromptTemplate};
use ivg_tokenize::Tokenizer;

pub use config::{ConfigError, ServerConfig};
use metrics::Metrics;
use validate::PresetInfo;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {error}")]
    Bind { addr: String, error: std::io::Error },
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    #[error("loading the models: {0}")]
    Load(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// What the handlers need once the models are loaded.
pub(crate) struct Ready {
    pub tokenizer: Arc<Tokenizer>,
    pub base_template: PromptTemplate,
    pub context: usize,
    pub presets: Vec<PresetInfo>,
    pub jobs: Mutex<std::sync::mpsc::Sender<worker::Job>>,
}

/// Shared state of the handlers.
pub(crate) struct App {
    pub config: ServerConfig,
    pub ready: OnceLock<Ready>,
    pub draining: AtomicBool,
    pub metrics: Arc<Metrics>,
    /// Choices accepted and not yet answered (decoding or waiting).
    pub in_flight: AtomicUsize,
    pub next_id: AtomicU64,
    pub started: u64,
}

/// Where to listen.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
}

/// Binds, prints `ivg serve: listening on http://ADDR`, loads the models
/// (answering 503 on `/health` meanwhile), serves until SIGTERM or Ctrl-C,
/// then drains and returns.
pub async fn serve(config: ServerConfig, options: ServeOptions) -> Result<(), ServeError> {
    config.validate()?;
    let addr = format!("{}:{}", options.host, options.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|error| ServeError::Bind {
            addr: addr.clone(),
            error,
        })?;
    let local: SocketAddr = listener.local_addr()?;
    eprintln!("ivg serve: listening on http://{local}");
    let app = Arc::new(App {
        config,
        ready: OnceLock::new(),
        draining: AtomicBool::new(false),
        metrics: Arc::new(Metrics::default()),
        in_flight: AtomicUsize::new(0),
        next_id: AtomicU64::new(0),
        started: unix_now(),
    });
    // Loading runs beside the server: `/health` says 503 until it is done,
    // and a failed load shuts the server down with the error.
    let failed: Arc<Mutex<Option<ServeError>>> = Arc::new(Mutex::new(None));
    let load_failed = Arc::new(tokio::sync::Notify::new());
    {
        let (app, failed, notify) = (app.clone(), failed.clone(), load_failed.clone());
        tokio::spawn(async move {
            let loader = app.clone();
            let outcome = tokio::task::spawn_blocking(move || load(&loader)).await;
            let error = match outcome {
                Ok(Ok(_engine_thread)) => {
                    eprintln!("ivg serve: ready");
                    return;
                }
                Ok(Err(e)) => e,
                Err(e) => ServeError::Load(e.to_string()),
            };
            if let Ok(mut f) = failed.lock() {
                *f = Some(error);
            }
            notify.notify_one();
        });
    }
    // On SIGTERM the listener stays open while in-flight requests finish, so
    // that new requests get a clear 503 rather than a refused connection.
    let shutdown = {
        let app = app.clone();
        async move {
            tokio::select! {
                _ = shutdown_signal(app.clone()) => {
                    while app.in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0 {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                }
                _ = load_failed.notified() => {}
            }
        }
    };
    axum::serve(listener, routes::router(app.clone()))
        .with_graceful_shutdown(shutdown)
        .await?;
    let error = failed.lock().ok().and_then(|mut f| f.take());
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Loads the base model and every preset's guides, then starts the engine
/// thread; returns its handle.
fn load(app: &App) -> Result<std::thread::JoinHandle<()>, ServeError> {
    let config = &app.config;
    let fallback = config
        .presets
        .iter()
        .find_map(|p| p.guides.as_ref().and_then(|g| g.first_model()));
    let base = config
        .base
        .model
        .load(fallback)
        .map_err(|e| ServeError::Load(format!("base model: {e}")))?;
    let mut guides = Vec::new();
    let mut presets = Vec::new();
    for p in &config.presets {
        let set = match &p.guides {
            None => None,
            Some(spec) => Some(Arc::new(
                GuideSet::load(spec, base.tokenizer.clone())
                    .map_err(|e| ServeError::Load(format!("preset `{}`: {e}", p.name)))?
                    .named(p.name.clone()),
            )),
        };
        presets.push(PresetInfo {
            name: p.name.clone(),
            defaults: p.defaults.clone(),
            has_implicit: set.as_ref().is_some_and(|s| !s.pairs().is_empty()),
            has_explicit: set.as_ref().is_some_and(|s| s.explicit().is_some()),
            guides: set.clone(),
        });
        guides.push(set);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = Ready {
        tokenizer: base.tokenizer.clone(),
        base_template: config.base.template.clone(),
        context: base.context_length(),
        presets,
        jobs: Mutex::new(tx),
    };
    if let Some(remote) = base.remote() {
        app.metrics.watch_remote(remote.clone());
    }
    let models = worker::Models { base, guides };
    let max = config.server.max_concurrent;
    let metrics = app.metrics.clone();
    let handle = std::thread::Builder::new()
        .name("ivg-engine".into())
        .spawn(move || worker::run(models, rx, max, metrics))?;
    if app.ready.set(ready).is_err() {
        return Err(ServeError::Load("the models were loaded twice".into()));
    }
    Ok(handle)
}

/// Resolves on SIGTERM or Ctrl-C and marks the server as draining, so that
/// new requests get 503 while in-flight ones finish.
async fn shutdown_signal(app: Arc<App>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    app.draining
        .store(true, std::sync::atomic::Ordering::SeqCst);
    eprintln!("ivg serve: draining (no new requests; finishing those in flight)");
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
