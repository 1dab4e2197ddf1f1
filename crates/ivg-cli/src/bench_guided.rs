//! `ivg bench-guided`: wall time per prompt of every method against the summed
//! forward time of the models it runs (issue 3's cost target: IVG at W = K = 4,
//! L = 5 within 1.15x of its model time). The base is SmolLM2-135M-Instruct;
//! the guides are small randomly initialised Llamas sharing its tokenizer
//! (their weights do not change the cost), built in memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use ivg_assets::Asset;
use ivg_decode::{
    guided_generate, BaseModel, ChunkRanking, GuidanceConfig, Guides, Method, SamplingConfig,
    TokenPolicy,
};
use ivg_models::{CausalLm, ModelConfig, QuantPolicy, Weights};
use ivg_tokenize::Tokenizer;
use ivg_value::{ImplicitPair, ImplicitValue, QValue, ValueFunction};

#[derive(clap::Args)]
pub struct BenchGuidedArgs {
    /// Prompts decoded together in one batch.
    #[arg(long, default_value_t = 2)]
    prompts: usize,
    #[arg(long, default_value_t = 50)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 4)]
    width: usize,
    #[arg(long, default_value_t = 4)]
    successors: usize,
    #[arg(long, default_value_t = 5)]
    chunk_len: usize,
    /// Methods to run (default: the whole matrix).
    #[arg(long, value_delimiter = ',')]
    methods: Vec<String>,
    /// Layers of each random guide.
    #[arg(long, default_value_t = 4)]
    guide_layers: usize,
    /// Hidden size of each random guide.
    #[arg(long, default_value_t = 256)]
    guide_hidden: usize,
    /// Run the guides' matrices as Q8_0 (quantized at load), as the base.
    #[arg(long)]
    q8_guides: bool,
}

const PROMPTS: [&str; 8] = [
    "I rented this movie last weekend and",
    "The acting in this film was",
    "When I first saw the trailer I thought",
    "This is one of those movies that",
    "My wife and I watched this and",
    "The director clearly wanted to",
    "After twenty minutes I realised",
    "Nobody warned me that this film",
];

/// A small Llama over `vocab` tokens with random weights, as an inference model.
fn random_guide(
    name: &str,
    vocab: usize,
    (layers, hidden): (usize, usize),
    quant: QuantPolicy,
) -> Result<CausalLm> {
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": vocab, "hidden_size": hidden,
        "intermediate_size": hidden * 3, "num_hidden_layers": layers,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048,
        "tie_word_embeddings": true
    });
    let config = ModelConfig::from_value(&config, std::path::Path::new(name))?;
    let varmap = VarMap::new();
    CausalLm::load(&Weights::from_varmap(&varmap, &Device::Cpu), &config, name)?;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("variable map lock poisoned"))?;
    let map: HashMap<String, Tensor> = data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    drop(data);
    Ok(CausalLm::load(
        &Weights::from_tensors(map, name, &Device::Cpu).with_quant(quant),
        &config,
        name,
    )?)
}

struct Row {
    method: &'static str,
    wall: f64,
    model: f64,
    tokens: usize,
}

pub fn run(args: BenchGuidedArgs) -> Result<()> {
    let path = crate::assets_cmd::ensure(&[Asset::SmolLm2Gguf])?.remove(0);
    let base = crate::load::load_lm(&path, false)?;
    let tokenizer: Arc<Tokenizer> = base.tokenizer.clone();
    let vocab = base.model.vocab_size();
    let (l, h) = (args.guide_layers, args.guide_hidden);
    let quant = if args.q8_guides {
        QuantPolicy::Q8_0
    } else {
        QuantPolicy::Keep
    };
    let tuned = Arc::new(random_guide("tuned", vocab, (l, h), quant)?);
    let reference = Arc::new(random_guide("ref", vocab, (l, h), quant)?);
    let q = Arc::new(random_guide("q", vocab, (l, h), quant)?);
    let methods: Vec<Method> = if args.methods.is_empty() {
        Method::ALL.to_vec()
    } else {
        args.methods
            .iter()
            .map(|m| Method::from_name(m))
            .collect::<Result<_, _>>()?
    };
    let texts: Vec<String> = PROMPTS
        .iter()
        .cycle()
        .take(args.prompts)
        .map(|s| s.to_string())
        .collect();
    let template = ivg_eval::imdb::base_prompt("{prompt}");
    let prompts = texts
        .iter()
        .map(|t| Ok(tokenizer.encode(&template.replace("{prompt}", t), true)?))
        .collect::<Result<Vec<_>>>()?;
    let shape = GuidanceConfig {
        token: TokenPolicy::Base,
        chunk: ChunkRanking::None,
        width: args.width,
        successors: args.successors,
        chunk_len: (args.chunk_len > 0).then_some(args.chunk_len),
        max_new_tokens: args.max_new_tokens,
        sampling: SamplingConfig {
            temperature: 0.7,
            top_k: None,
            top_p: None,
        },
        seed: 0,
        stop_strings: Vec::new(),
    };
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    println!(
        "base {} (Q8_0); guides: random Llama {l} layers, d={h}, vocab {vocab}, {}; {} prompts in one batch; W={} K={} L={} max {} tokens; threads {threads}",
        path.display(), if args.q8_guides { "Q8_0" } else { "f32" }, args.prompts, args.width, args.successors, args.chunk_len, args.max_new_tokens
    );
    println!("| method | rows/prompt | wall s/prompt | model s/prompt | ratio | tokens/s |\n|---|---:|---:|---:|---:|---:|");
    for method in methods {
        let config = method.config(&shape, 1.0);
        let models: [&CausalLm; 4] = [&base.model, &tuned, &reference, &q];
        models.iter().for_each(|m| m.stats().reset());
        let (implicit_feed, explicit_feed) = crate::guided::feeds(&config);
        let mut implicit = implicit_feed
            .map(|feed| {
                let pair = ImplicitPair {
                    tuned: tuned.clone(),
                    tuned_template: template.clone(),
                    reference: reference.clone(),
                    reference_template: template.clone(),
                    tokenizer: tokenizer.clone(),
                    weight: 1.0,
                };
                ImplicitValue::new("implicit", vec![pair], 1.0, feed)
            })
            .transpose()?;
        let mut explicit = explicit_feed
            .map(|feed| {
                QValue::new(
                    "explicit",
                    q.clone(),
                    template.clone(),
                    tokenizer.clone(),
                    1.0,
                    feed,
                )
            })
            .transpose()?;
        let mut guides = Guides {
            base: BaseModel::Local(&base.model),
            base_tokenizer: Some(&tokenizer),
            implicit: implicit.as_mut().map(|v| v as &mut dyn ValueFunction),
            explicit: explicit.as_mut().map(|v| v as &mut dyn ValueFunction),
        };
        let start = Instant::now();
        let out = guided_generate(
            &mut guides,
            &texts,
            &prompts,
            &config,
            &base.stop_ids(),
            &mut |_| {},
        )
        .with_context(|| format!("running {}", method.name()))?;
        let wall = start.elapsed().as_secs_f64();
        let model: f64 = models.iter().map(|m| m.stats().time().as_secs_f64()).sum();
        let row = Row {
            method: method.name(),
            wall,
            model,
            tokens: out.iter().map(|o| o.tokens.len()).sum(),
        };
        let n = args.prompts as f64;
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.3} | {:.1} |",
            row.method,
            config.rows_per_prompt(),
            row.wall / n,
            row.model / n,
            row.wall / row.model,
            row.tokens as f64 / row.wall
        );
    }
    Ok(())
}
