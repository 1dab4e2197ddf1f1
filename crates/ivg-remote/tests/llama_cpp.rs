//! Against a real llama.cpp server on loopback (built from the PyPI sdist by
//! `scripts/build-llama-server.sh`, which `.ci/run` calls; the test builds it
//! when the cache lacks it) serving SmolLM2's GGUF: ids, top-k and seeded
//! chunks come back as the protocol promises, agree with ivg's own model on
//! the same file, and faults name the engine.

mod common;

use common::{f32_gguf, log_softmax, start};
use ivg_decode::{combine_topk, Sampler, SamplingConfig};
use ivg_models::LogitsSpan;
use ivg_remote::{Finish, RemoteEngine, RemoteError, RemoteSpec, Sampling, Vocabulary};
use ivg_runtime::{LoadedModel, ModelRef, Quant};

#[test]
fn llama_cpp_engine_speaks_ids_topk_and_seeded_chunks() {
    let local = ModelRef::new("asset:smollm2")
        .with_quant(Quant::F32)
        .load()
        .expect("SmolLM2 (run `ivg assets fetch smollm2`)");
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(&f32_gguf(dir.path()));
    let engine =
        RemoteEngine::connect(&RemoteSpec::llama_cpp(server.url.clone())).expect("connect");
    assert_eq!(engine.context_length(), 1024, "-c 4096 over 4 slots");
    ids_and_vocabulary(&engine, &local);
    let prompt = local
        .tokenizer
        .encode("I watched this film and", false)
        .expect("encode");
    topk_equals_ivg(&engine, &local, &prompt);
    eft_on_the_topk(&engine, &local);
    seeded_chunks(&engine, &prompt);

    // Refused locally: a prefix past the engine's context.
    let long = vec![prompt[0]; 1024];
    let err = engine.next_token_topk(&long, 5).unwrap_err().to_string();
    assert!(
        err.contains(&server.url) && err.contains("context of 1024"),
        "{err}"
    );

    // The engine gone: a transport error naming it and the call, after retries.
    let url = server.url.clone();
    drop(server);
    let err = engine.next_token_topk(&prompt, 5).unwrap_err();
    assert!(
        matches!(err, RemoteError::Transport { attempts: 4, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&url) && msg.contains("POST /completion (top-k)"),
        "{msg}"
    );
}

/// The engine's ids and vocabulary are ivg's for SmolLM2, not for Gemma 3.
fn ids_and_vocabulary(engine: &RemoteEngine, local: &LoadedModel) {
    // Ids: the engine's equal ivg's, with and without special tokens.
    let texts = [
        "I watched this film and",
        "<|im_start|>user\nReview Casablanca.<|im_end|>\n",
        "  spaces,\ttabs\n\nand 12345 digits; ünïcödé — done.",
    ];
    for text in texts {
        let ours = local.tokenizer.encode(text, false).expect("encode");
        assert_eq!(
            engine.tokenize(text, false).expect("tokenize"),
            ours,
            "{text:?}"
        );
        assert_eq!(engine.detokenize(&ours).expect("detokenize"), text);
    }

    // Vocabulary, through the engine's API: SmolLM2's, and not Gemma 3's.
    let same = engine
        .compare_vocabulary(&local.tokenizer, 256)
        .expect("compare");
    assert_eq!(same, Vocabulary::Same);
    let gemma = ModelRef::new("asset:gemma3")
        .load_tokenizer()
        .expect("Gemma 3 tokenizer");
    match engine.compare_vocabulary(&gemma, 256).expect("compare") {
        Vocabulary::Different { reason } => {
            assert!(reason.contains("the engine has 49152 tokens"), "{reason}")
        }
        Vocabulary::Same => panic!("Gemma 3's vocabulary taken for SmolLM2's"),
    }
}

/// Top-20 log-probabilities over 50 greedy positions, and the prompt cache.
fn topk_equals_ivg(engine: &RemoteEngine, local: &LoadedModel, prompt: &[u32]) {
    // Top-k: 20 ids, most likely first, against ivg's f32 model on the same
    // weights, over 50 positions of the greedy path.
    let mut prefix = prompt.to_vec();
    let mut state = local.model.new_state();
    let mut logits = local
        .model
        .prefill(&[prompt.to_vec()], &mut state, LogitsSpan::Last)
        .expect("prefill");
    let mut worst = 0f32;
    for _ in 0..50 {
        let top = engine.next_token_topk(&prefix, 20).expect("top-k");
        assert_eq!(top.tokens.len(), 20);
        assert!(
            top.tokens.windows(2).all(|w| w[0].1 >= w[1].1),
            "{:?}",
            top.tokens
        );
        let ours = log_softmax(&logits.get(0).expect("row"));
        for &(id, lp) in &top.tokens {
            worst = worst.max((ours[id as usize] - lp).abs());
        }
        // Equal up to a near tie inside the tolerance.
        let best = (0..ours.len())
            .max_by(|&a, &b| ours[a].total_cmp(&ours[b]))
            .expect("vocab");
        let next = top.tokens[0].0;
        assert!(
            ours[best] - ours[next as usize] < 1e-3,
            "argmax after {prefix:?}: ivg {best}, llama.cpp {next}"
        );
        prefix.push(next);
        logits = local.model.step(&[next], &mut state).expect("step");
    }
    eprintln!("top-20 log-probabilities, llama.cpp vs ivg, f32 GGUF: max |diff| {worst:.2e} over 50 positions");
    assert!(worst < 1e-3, "top-20 log-probabilities differ by {worst}");

    // A repeated prefix is served from the prompt cache.
    let again = engine
        .next_token_topk(&prefix[..prefix.len() - 1], 20)
        .expect("top-k");
    assert!(again.cached > 0, "no cached prompt tokens reported");
}

fn eft_on_the_topk(engine: &RemoteEngine, local: &LoadedModel) {
    // EFT on the engine's top-k, with the demo's training-free implicit value
    // (SmolLM2 under a glowing-review template against a plain one, beta 1):
    // with every token a candidate it is the in-process policy; with k = 20
    // its error stays under the bound it reports.
    let text = "The film was";
    let template_lp = |template: &str| {
        let ids = local
            .tokenizer
            .encode(&template.replace("{prompt}", text), false)
            .expect("encode");
        let mut st = local.model.new_state();
        let l = local
            .model
            .prefill(&[ids], &mut st, LogitsSpan::Last)
            .expect("prefill");
        log_softmax(&l.get(0).expect("row"))
    };
    let tuned =
        template_lp("Here is a glowing, enthusiastic, positive movie review from imdb: {prompt}");
    let reference = template_lp("Here is a movie review from imdb: {prompt}");
    let offsets: Vec<f32> = tuned.iter().zip(&reference).map(|(t, r)| t - r).collect();
    let base_ids = local.tokenizer.encode(text, false).expect("encode");
    let base_lp = {
        let mut st = local.model.new_state();
        let l = local
            .model
            .prefill(std::slice::from_ref(&base_ids), &mut st, LogitsSpan::Last)
            .expect("prefill");
        log_softmax(&l.get(0).expect("row"))
    };
    let in_process: Vec<f32> = base_lp.iter().zip(&offsets).map(|(b, o)| b + o).collect();
    let vocab = offsets.len();
    for t in [0.7, 1.0] {
        let sampling = SamplingConfig {
            temperature: t,
            top_k: None,
            top_p: None,
        };
        let sampler = Sampler::new(sampling, 0).expect("sampler");
        let want = sampler.distribution(&in_process).expect("distribution");
        for k in [vocab, 20] {
            let top = engine.next_token_topk(&base_ids, k).expect("top-k");
            let c = combine_topk(&top.tokens, &offsets, t).expect("combine");
            let got = sampler.distribution(&c.logits).expect("distribution");
            let mut on = vec![0f64; vocab];
            for (&id, &p) in c.ids.iter().zip(&got) {
                on[id as usize] = p;
            }
            let tv = 0.5
                * want
                    .iter()
                    .zip(&on)
                    .map(|(a, b)| (a - b).abs())
                    .sum::<f64>();
            eprintln!("EFT over the engine's top-{k}, T {t}: TV to in-process {tv:.2e}, bound {:.2e}, base mass {:.4}", c.tv_bound, c.base_mass);
            if k == vocab {
                assert!(tv < 1e-3, "k = vocab, T {t}: TV {tv}");
            } else {
                assert!(
                    tv <= c.tv_bound + 1e-3,
                    "k {k}, T {t}: TV {tv} over the bound {}",
                    c.tv_bound
                );
            }
        }
    }
}

fn seeded_chunks(engine: &RemoteEngine, prompt: &[u32]) {
    // Chunks: n seeded continuations, reproducible; a greedy chunk follows
    // the engine's own argmax.
    let sampling = Sampling {
        temperature: 1.0,
        top_p: 0.95,
        seed: 7,
    };
    let chunks = engine
        .sample_chunks(prompt, 4, 6, sampling)
        .expect("chunks");
    assert_eq!(chunks.len(), 4);
    for c in &chunks {
        assert!(
            c.finish == Finish::Length && c.tokens.len() == 6 || c.finish == Finish::Eos,
            "{c:?}"
        );
    }
    let distinct: std::collections::HashSet<_> = chunks.iter().map(|c| c.tokens.clone()).collect();
    assert!(distinct.len() > 1, "4 seeded chunks all equal: {chunks:?}");
    let same = engine
        .sample_chunks(prompt, 4, 6, sampling)
        .expect("chunks again");
    let tokens = |cs: &[ivg_remote::Chunk]| cs.iter().map(|c| c.tokens.clone()).collect::<Vec<_>>();
    assert_eq!(
        tokens(&same),
        tokens(&chunks),
        "same seed, different chunks"
    );
    let greedy = Sampling {
        temperature: 0.0,
        top_p: 1.0,
        seed: 1,
    };
    let g = engine
        .sample_chunks(prompt, 1, 5, greedy)
        .expect("greedy chunk");
    let mut walk = prompt.to_vec();
    for &t in &g[0].tokens {
        assert_eq!(
            engine.next_token_topk(&walk, 1).expect("top-1").tokens[0].0,
            t
        );
        walk.push(t);
    }
}
