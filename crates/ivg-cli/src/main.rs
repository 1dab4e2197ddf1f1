//! `ivg`: parse, dispatch, exit code. Every capability lives in a library crate.

mod assets_cmd;
mod bench;
mod bench_guided;
mod demo;
mod generate_cmd;
mod guided;
mod inspect_cmd;
mod load;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inference-time alignment of language models with Integrated Value Guidance.
#[derive(Parser)]
#[command(name = "ivg", version, about)]
struct Cli {
    /// CPU threads for tensor kernels (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text with a model, streaming tokens to stdout.
    Generate(Box<generate_cmd::GenerateArgs>),
    /// Print a model's architecture, vocabulary, storage types, size and context.
    Inspect(inspect_cmd::InspectArgs),
    /// Fetch or list the offline models and data sets.
    #[command(subcommand)]
    Assets(assets_cmd::AssetsCommand),
    /// Fetch the assets, then continue IMDB test prompts with SmolLM2-135M-Instruct.
    Demo(demo::DemoArgs),
    /// Measure prefill and decode throughput (tokens/s) at several batch sizes.
    Bench(bench::BenchArgs),
    /// Cost of every guided method: wall time against the summed model forward time.
    BenchGuided(bench_guided::BenchGuidedArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        // candle sizes its CPU thread pool from this variable on first use.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    let result = match cli.command {
        Command::Generate(args) => generate_cmd::run(*args),
        Command::Inspect(args) => inspect_cmd::run(args),
        Command::Assets(cmd) => assets_cmd::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BenchGuided(args) => bench_guided::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
