//! `ivg bench`: prefill and decode throughput reported apart, after a warm-up
//! (architecture.md, practice 11). Decode runs greedy steps on every row so the
//! batch stays full; figures are tokens per second of wall time.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use ivg_assets::Asset;
use ivg_models::{CausalLm, LogitsSpan};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Model to measure (default: the SmolLM2-135M-Instruct asset, Q4_1 re-quantized to Q8_0).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    batch: Vec<usize>,
    /// Prompt tokens per row.
    #[arg(long, default_value_t = 32)]
    prompt_len: usize,
    /// Decode steps measured per batch size.
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Dequantize to f32 instead of keeping quantized weights.
    #[arg(long)]
    f32: bool,
}

struct Row {
    batch: usize,
    prefill_tps: f64,
    decode_tps: f64,
    step_ms: f64,
}

fn measure(model: &CausalLm, batch: usize, prompt_len: usize, steps: usize) -> Result<Row> {
    let vocab = model.vocab_size() as u32;
    let prompts: Vec<Vec<u32>> = (0..batch)
        .map(|r| {
            (0..prompt_len)
                .map(|i| ((r * 131 + i * 17 + 100) as u32) % vocab)
                .collect()
        })
        .collect();
    let mut state = model.new_state();
    let t0 = Instant::now();
    let logits = model.prefill(&prompts, &mut state, LogitsSpan::Last)?;
    let prefill = t0.elapsed().as_secs_f64();
    let mut next: Vec<u32> = logits.argmax(candle_core::D::Minus1)?.to_vec1()?;
    let t1 = Instant::now();
    for _ in 0..steps {
        let logits = model.step(&next, &mut state)?;
        next = logits.argmax(candle_core::D::Minus1)?.to_vec1()?;
    }
    let decode = t1.elapsed().as_secs_f64();
    Ok(Row {
        batch,
        prefill_tps: (batch * prompt_len) as f64 / prefill,
        decode_tps: (batch * steps) as f64 / decode,
        step_ms: decode * 1e3 / steps as f64,
    })
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.batch.is_empty()
        || args.batch.contains(&0)
        || args.new_tokens == 0
        || args.prompt_len == 0
    {
        bail!("--batch sizes, --prompt-len and --new-tokens must be positive");
    }
    let path = match args.model {
        Some(p) => p,
        None => crate::assets_cmd::ensure(&[Asset::SmolLm2Gguf])?.remove(0),
    };
    let lm = crate::load::load_lm(&path, args.f32)?;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    println!(
        "model {} ({}), threads {threads}, prompt {} tokens, {} decode steps",
        path.display(),
        if args.f32 {
            "f32"
        } else {
            "quantized as stored, Q4_1->Q8_0"
        },
        args.prompt_len,
        args.new_tokens
    );
    // Warm-up: page in the weights and the allocator.
    measure(&lm.model, 1, args.prompt_len.min(8), 4)?;
    println!("| batch | prefill tok/s | decode tok/s | ms/step |\n|---:|---:|---:|---:|");
    for &b in &args.batch {
        let r = measure(&lm.model, b, args.prompt_len, args.new_tokens)?;
        println!(
            "| {} | {:.1} | {:.1} | {:.2} |",
            r.batch, r.prefill_tps, r.decode_tps, r.step_ms
        );
    }
    Ok(())
}
