//! `ivg demo`: the README's first command. Fetches SmolLM2-135M-Instruct and the
//! IMDB reviews, then continues truncated test-side reviews with the authors'
//! sentiment prompt (`Here is a movie review from imdb: {prompt}`, T = 0.7,
//! 50 new tokens), as one batch. Guided output will sit beside it once the
//! guidance engine lands.

use anyhow::Result;
use ivg_assets::Asset;
use ivg_decode::{generate, GenerateConfig, SamplingConfig};
use ivg_eval::imdb;

use crate::generate_cmd::model_name;
use crate::load::load_lm;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How many test-side reviews to continue.
    #[arg(long, default_value_t = 4)]
    prompts: usize,
    /// Words of each review kept as the prompt.
    #[arg(long, default_value_t = 12)]
    prompt_words: usize,
    #[arg(long, default_value_t = 50)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let paths =
        crate::assets_cmd::ensure(&[Asset::SmolLm2Gguf, Asset::MovieReviews, Asset::ImdbFull])?;
    let (model_path, reviews_csv, imdb_csv) = (&paths[0], &paths[1], &paths[2]);
    let splits = imdb::load_imdb(reviews_csv, imdb_csv)?;
    eprintln!(
        "IMDB: {} train-side and {} test-side reviews",
        splits.train.len(),
        splits.test.len()
    );
    let lm = load_lm(model_path, false)?;
    let prefixes: Vec<String> = splits
        .test
        .iter()
        .take(args.prompts)
        .map(|r| imdb::prompt_prefix(&r.text, args.prompt_words))
        .collect();
    let prompts = prefixes
        .iter()
        .map(|p| Ok(lm.tokenizer.encode(&imdb::base_prompt(p), true)?))
        .collect::<Result<Vec<_>>>()?;
    let config = GenerateConfig {
        max_new_tokens: args.max_new_tokens,
        sampling: SamplingConfig {
            temperature: 0.7,
            top_k: None,
            top_p: None,
        },
        seed: args.seed,
        stop_ids: lm.stop_ids(),
    };
    let start = std::time::Instant::now();
    let outputs = generate(&lm.model, &prompts, &config, &mut |_, _| {})?;
    let tokens: usize = outputs.iter().map(|o| o.tokens.len()).sum();
    println!(
        "Base: {} (Q8_0), T = 0.7, {} new tokens at most\n",
        model_name(model_path),
        args.max_new_tokens
    );
    for (prefix, out) in prefixes.iter().zip(&outputs) {
        let completion = lm.tokenizer.decode(&out.tokens, true)?;
        println!("[prompt] {prefix}\n[base]   {}\n", completion.trim());
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{tokens} tokens in {secs:.1} s ({:.1} tokens/s, batch of {})",
        tokens as f64 / secs,
        prompts.len()
    );
    Ok(())
}
