//! `ivg demo`: the README's first command. Fetches SmolLM2-135M-Instruct and the
//! IMDB reviews, then continues truncated test-side reviews with the authors'
//! sentiment prompt (`Here is a movie review from imdb: {prompt}`, T = 0.7,
//! 50 new tokens), as one batch, and beside it EFTi+CBSi guided by a
//! training-free implicit value: the same model under a "glowing review"
//! template against the neutral one (no guide needs training).

use anyhow::Result;
use ivg_assets::Asset;
use ivg_decode::{
    generate, guided_generate, BaseModel, ChunkRanking, GenerateConfig, GuidanceConfig, Guides,
    Method, SamplingConfig, TokenPolicy,
};
use ivg_eval::imdb;
use ivg_value::{Feed, ImplicitPair, ImplicitValue, ValueFunction};

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
    /// Beam width W of the guided run (the paper uses 4).
    #[arg(long, default_value_t = 2)]
    width: usize,
    /// Successors K of the guided run (the paper uses 4).
    #[arg(long, default_value_t = 2)]
    successors: usize,
    /// Instruction of the training-free "tuned" template.
    #[arg(
        long,
        default_value = "Here is a glowing, enthusiastic, positive movie review from imdb: {prompt}"
    )]
    tuned_template: String,
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
    let base_out = generate(&lm.model, &prompts, &config, &mut |_, _| {})?;
    let base_secs = start.elapsed().as_secs_f64();
    let model = lm.model.clone();
    let tokenizer = lm.tokenizer.clone();
    let pair = || ImplicitPair {
        tuned: model.clone(),
        tuned_template: args.tuned_template.clone(),
        reference: model.clone(),
        reference_template: imdb::base_prompt("{prompt}"),
        tokenizer: tokenizer.clone(),
        weight: 1.0,
    };
    let base_tokens: Vec<Vec<u32>> = base_out.iter().map(|o| o.tokens.clone()).collect();
    let base_values = score(
        ImplicitValue::new("implicit", vec![pair()], 1.0, Feed::Chunked)?,
        &prefixes,
        &base_tokens,
    )?;
    let shape = GuidanceConfig {
        token: TokenPolicy::Base,
        chunk: ChunkRanking::None,
        width: args.width,
        successors: args.successors,
        chunk_len: Some(5),
        max_new_tokens: args.max_new_tokens,
        sampling: config.sampling.clone(),
        seed: args.seed,
        stop_strings: Vec::new(),
    };
    let guided_config = Method::EftICbsI.config(&shape, 1.0);
    let mut value = ImplicitValue::new("implicit", vec![pair()], 1.0, Feed::Stepped)?;
    let mut guides = Guides {
        base: BaseModel::Local(&model),
        base_tokenizer: Some(&tokenizer),
        implicit: Some(&mut value),
        explicit: None,
    };
    let start = std::time::Instant::now();
    let guided = guided_generate(
        &mut guides,
        &prefixes,
        &prompts,
        &guided_config,
        &config.stop_ids,
        &mut |_| {},
    )?;
    let guided_secs = start.elapsed().as_secs_f64();
    println!(
        "Base: {} (Q8_0), T = 0.7, {} new tokens at most. EFTi+CBSi (W={}, K={}, L=5, beta=1): the same model as a\ntraining-free implicit value, tuned template \"{}\" against the base prompt.\n",
        model_name(model_path), args.max_new_tokens, args.width, args.successors, args.tuned_template
    );
    for (i, prefix) in prefixes.iter().enumerate() {
        let b = tokenizer.decode(&base_out[i].tokens, true)?;
        let g = tokenizer.decode(&guided[i].tokens, true)?;
        println!("[prompt]    {prefix}");
        println!(
            "[base]      {} (implicit value {:+.2})",
            b.trim(),
            base_values[i]
        );
        println!(
            "[efti+cbsi] {} (implicit value {:+.2})\n",
            g.trim(),
            guided[i].value
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let gv: Vec<f64> = guided.iter().map(|o| o.value).collect();
    println!(
        "mean implicit value: base {:+.2}, efti+cbsi {:+.2}",
        mean(&base_values),
        mean(&gv)
    );
    eprintln!(
        "base {base_secs:.1} s, efti+cbsi {guided_secs:.1} s for {} prompts",
        prompts.len()
    );
    Ok(())
}

/// Values of finished responses under a chunk-scored value function.
fn score(mut value: ImplicitValue, texts: &[String], responses: &[Vec<u32>]) -> Result<Vec<f64>> {
    value.begin(texts)?;
    let longest = responses.iter().map(Vec::len).max().unwrap_or(0);
    for k in 0..longest {
        let tokens: Vec<u32> = responses
            .iter()
            .map(|r| r.get(k).copied().unwrap_or(0))
            .collect();
        let live: Vec<bool> = responses.iter().map(|r| k < r.len()).collect();
        value.observe(&tokens, &live)?;
    }
    Ok(value.values()?)
}
