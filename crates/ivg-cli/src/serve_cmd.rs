//! `ivg serve`: the OpenAI-compatible service of `ivg-server`, configured by a
//! TOML file (or the SmolLM2 demo configuration without one).

use std::path::PathBuf;

use anyhow::{Context, Result};
use ivg_server::{ServeOptions, ServerConfig};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Server configuration (TOML): limits, base model, presets of guides.
    /// Without it: SmolLM2-135M-Instruct with the demo's training-free guides.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// 0 picks a free port (printed on the `listening on` line).
    #[arg(long, default_value_t = 8000)]
    port: u16,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let config = match &args.config {
        Some(path) => ServerConfig::from_file(path)?,
        None => ServerConfig::demo(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let options = ServeOptions {
        host: args.host,
        port: args.port,
    };
    runtime.block_on(ivg_server::serve(config, options))?;
    Ok(())
}
