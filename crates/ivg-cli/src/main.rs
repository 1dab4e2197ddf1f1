//! `ivg`: parse, dispatch, exit code. Every capability lives in a library crate.

mod assets_cmd;
mod bench;
mod bench_guided;
mod data_cmd;
mod demo;
mod experiment;
mod generate_cmd;
mod guided;
mod inspect_cmd;
mod label_cmd;
mod load;
mod sample_cmd;
mod serve_cmd;
mod train_cmd;

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
    /// Train a guide: sft, dpo, reward, value or classifier, from a TOML job.
    Train(train_cmd::TrainArgs),
    /// Draw completions for JSONL prompts with any model and method.
    Sample(Box<sample_cmd::SampleArgs>),
    /// Score {prompt, response} rows with a reward model or classifier; write rewards or pairs.
    Label(Box<label_cmd::LabelArgs>),
    /// Evaluate a trained model on held-out data.
    #[command(subcommand)]
    Eval(label_cmd::EvalCommand),
    /// Export data sets as training JSONL.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// Run an experiment (data, gold reward, guides, every method, report) with cached stages.
    #[command(subcommand)]
    Experiment(experiment::ExperimentCommand),
    /// Cost of every guided method: wall time against the summed model forward time.
    BenchGuided(bench_guided::BenchGuidedArgs),
    /// Serve guided generation over an OpenAI-compatible HTTP API.
    Serve(serve_cmd::ServeArgs),
}

/// Keeps freed tensor buffers in the process. glibc hands every allocation
/// above its mmap threshold back to the kernel on free, and the next tensor of
/// that size page-faults its memory in again: in CPU training (many large
/// short-lived activations and gradients) that was about a quarter of the run
/// time as kernel time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only changes allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// Lets `ivg ... | head` end quietly: Rust ignores SIGPIPE, so a closed
/// pipe would otherwise make `println!` panic.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn default_sigpipe() {
    // SAFETY: restores the default disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn default_sigpipe() {}

fn main() -> ExitCode {
    keep_freed_memory();
    default_sigpipe();
    let cli = Cli::parse();
    // candle and rayon size their pools from this variable on first use, and
    // candle reads it again on every op: unset, each read parses
    // /proc/cpuinfo (seen as a tenth of a serving step's time), so it is
    // always set, once, before any thread starts.
    let threads = cli
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1);
    std::env::set_var("RAYON_NUM_THREADS", threads.max(1).to_string());
    let result = match cli.command {
        Command::Generate(args) => generate_cmd::run(*args),
        Command::Inspect(args) => inspect_cmd::run(args),
        Command::Assets(cmd) => assets_cmd::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::BenchGuided(args) => bench_guided::run(args),
        Command::Train(args) => train_cmd::run(args),
        Command::Data(cmd) => data_cmd::run(cmd),
        Command::Sample(args) => sample_cmd::run(*args),
        Command::Label(args) => label_cmd::run(*args),
        Command::Eval(cmd) => label_cmd::run_eval(cmd),
        Command::Experiment(cmd) => experiment::run(cmd),
        Command::Serve(args) => serve_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
