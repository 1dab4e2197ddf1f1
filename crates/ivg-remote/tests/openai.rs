//! `protocol = "openai"` against a real llama.cpp server on loopback (its
//! `/v1/completions`), checked against the native protocol on the same
//! server: the same ids, the same top-k, seeded chunks that reproduce, the
//! right finish reasons, and the API key sent (or its absence named).
//! vLLM's answer shapes are covered by the parser tests in
//! `src/openai/tests.rs`; no vLLM runs here.

mod common;

use common::{f32_gguf, start_with};
use ivg_remote::{Finish, Protocol, RemoteEngine, RemoteError, RemoteSpec, Sampling, Vocabulary};
use ivg_runtime::ModelRef;

/// The key the server is started with, and the variable that holds it.
const KEY: &str = "ivg-test-key-8c1f";
const KEY_VAR: &str = "IVG_REMOTE_OPENAI_TEST_KEY";

fn spec(protocol: Protocol, url: &str) -> RemoteSpec {
    let mut spec = match protocol {
        Protocol::OpenAi => RemoteSpec::openai(url),
        Protocol::LlamaCpp => RemoteSpec::llama_cpp(url),
    };
    spec.api_key_env = Some(KEY_VAR.into());
    spec
}

#[test]
fn openai_protocol_on_llama_cpp_agrees_with_the_native_one() {
    let tokenizer = ModelRef::new("asset:smollm2")
        .load_tokenizer()
        .expect("SmolLM2 (run `ivg assets fetch smollm2`)");
    // F32 weights: with Q4_1 a prefix evaluated in one batch and the same
    // prefix partly from the cache differ by ~1e-2 (the batched kernels
    // quantize activations differently), which would hide the protocol.
    let dir = tempfile::tempdir().expect("temp dir");
    let gguf = f32_gguf(dir.path());
    let server = start_with(&gguf, &["--api-key", KEY, "--alias", "smollm2"]);
    std::env::set_var(KEY_VAR, KEY);

    keys_and_models(&server.url);
    let openai = RemoteEngine::connect(&spec(Protocol::OpenAi, &server.url)).expect("connect");
    let native = RemoteEngine::connect(&spec(Protocol::LlamaCpp, &server.url)).expect("connect");
    assert_eq!(openai.protocol(), Protocol::OpenAi);
    assert_eq!(openai.context_length(), 1024, "/v1/models meta.n_ctx");
    assert_eq!(openai.vocab_size().expect("vocab"), 49152);

    // Ids and vocabulary through /tokenize and /detokenize.
    for text in [
        "I watched this film and",
        "<|im_start|>user\nReview Casablanca.<|im_end|>\n",
        "  spaces,\ttabs\n\nand 12345 digits; ünïcödé — done 🎬.",
    ] {
        let ours = tokenizer.encode(text, false).expect("encode");
        assert_eq!(
            openai.tokenize(text, false).expect("tokenize"),
            ours,
            "{text:?}"
        );
        assert_eq!(openai.detokenize(&ours).expect("detokenize"), text);
    }
    assert_eq!(
        openai.compare_vocabulary(&tokenizer, 64).expect("compare"),
        Vocabulary::Same
    );

    let prompt = tokenizer
        .encode("I watched this film and", false)
        .expect("encode");
    same_topk(&openai, &native, &prompt);
    // After half an emoji the greedy token is its second half: llama.cpp
    // reports no log-probabilities for an incomplete character unless the
    // sampled token is pinned (both protocols do).
    let emoji = tokenizer
        .encode("Movies: 🎬🍿🎬🍿🎬🍿🎬🍿🎬", false)
        .expect("encode");
    same_topk(&openai, &native, &emoji);
    seeded_chunks(&openai, &native, &prompt);
    finish_reasons(&openai, &native, &tokenizer);
    shared_between_threads(&openai, &prompt);
}

/// Top-20 over 20 positions of the greedy path: equal log-probabilities
/// rank by rank within 1e-5, and equal ids but for near-ties (the server
/// evaluates a prefix in one batch or from its cache, which moves the last
/// digits), each id of one found in the other or at its boundary.
fn same_topk(openai: &RemoteEngine, native: &RemoteEngine, prompt: &[u32]) {
    const TOL: f32 = 1e-5;
    let mut prefix = prompt.to_vec();
    let mut worst = 0f32;
    for _ in 0..20 {
        let a = openai.next_token_topk(&prefix, 20).expect("openai top-k");
        let b = native.next_token_topk(&prefix, 20).expect("native top-k");
        assert_eq!(a.tokens.len(), 20);
        let (ta, tb) = (&a.tokens, &b.tokens);
        for ((_, x), (_, y)) in ta.iter().zip(tb) {
            worst = worst.max((x - y).abs());
        }
        for (one, other) in [(ta, tb), (tb, ta)] {
            let floor = other[other.len() - 1].1;
            for &(id, lp) in one {
                let found = other.iter().find(|p| p.0 == id).map(|p| p.1);
                let ok = match found {
                    Some(v) => (v - lp).abs() < TOL,
                    None => (lp - floor).abs() < TOL,
                };
                assert!(ok, "token {id} after {prefix:?}: {ta:?} vs {tb:?}");
            }
        }
        prefix.push(ta[0].0);
    }
    eprintln!("top-20, openai vs native protocol: max |diff| {worst:.2e} over 20 positions");
    assert!(worst < TOL, "top-20 log-probabilities differ by {worst}");
    let again = openai
        .next_token_topk(&prefix[..prefix.len() - 1], 20)
        .expect("top-k");
    assert!(again.cached > 0, "no cached prompt tokens reported");
}

fn seeded_chunks(openai: &RemoteEngine, native: &RemoteEngine, prompt: &[u32]) {
    let sampling = Sampling {
        temperature: 1.0,
        top_p: 0.95,
        seed: 7,
    };
    let tokens = |cs: &[ivg_remote::Chunk]| cs.iter().map(|c| c.tokens.clone()).collect::<Vec<_>>();
    let chunks = openai
        .sample_chunks(prompt, 4, 6, sampling)
        .expect("chunks");
    assert_eq!(chunks.len(), 4);
    for c in &chunks {
        assert!(
            c.finish == Finish::Length && c.tokens.len() == 6 || c.finish == Finish::Eos,
            "{c:?}"
        );
    }
    let distinct: std::collections::HashSet<_> = tokens(&chunks).into_iter().collect();
    assert!(distinct.len() > 1, "4 seeded chunks all equal: {chunks:?}");
    let again = openai
        .sample_chunks(prompt, 4, 6, sampling)
        .expect("chunks");
    assert_eq!(
        tokens(&again),
        tokens(&chunks),
        "same seed, different chunks"
    );
    // Choice i has seed + i on both protocols, with the same samplers.
    let natively = native
        .sample_chunks(prompt, 4, 6, sampling)
        .expect("chunks");
    assert_eq!(
        tokens(&natively),
        tokens(&chunks),
        "openai and native chunks differ"
    );
    let other = Sampling {
        seed: 8,
        ..sampling
    };
    let shifted = openai.sample_chunks(prompt, 3, 6, other).expect("chunks");
    assert_eq!(
        tokens(&shifted),
        tokens(&chunks)[1..].to_vec(),
        "choice i is seed + i"
    );
}

/// A chat turn that SmolLM2 closes ("The answer is 4." and the end token,
/// greedily): Eos with the end token included, the same as natively; a
/// limit hit is Length.
fn finish_reasons(
    openai: &RemoteEngine,
    native: &RemoteEngine,
    tokenizer: &ivg_tokenize::Tokenizer,
) {
    let chat = tokenizer
        .encode(
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
            false,
        )
        .expect("encode");
    let greedy = Sampling {
        temperature: 0.0,
        top_p: 1.0,
        seed: 1,
    };
    let a = openai.sample_chunks(&chat, 1, 64, greedy).expect("chunk");
    let b = native.sample_chunks(&chat, 1, 64, greedy).expect("chunk");
    assert_eq!(a[0].finish, Finish::Eos, "{:?}", a[0]);
    let last = *a[0].tokens.last().expect("tokens");
    assert!(tokenizer.eos_ids().contains(&last), "ends with {last}");
    assert_eq!(a[0].tokens, b[0].tokens);
    let cut = openai.sample_chunks(&chat, 1, 2, greedy).expect("chunk");
    assert_eq!(cut[0].finish, Finish::Length);
    assert_eq!(cut[0].tokens, a[0].tokens[..2].to_vec());
}

/// One engine, several threads at once (beams do this).
fn shared_between_threads(openai: &RemoteEngine, prompt: &[u32]) {
    let want = openai.next_token_topk(prompt, 5).expect("top-k");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| openai.next_token_topk(prompt, 5).expect("top-k")))
            .collect();
        // Concurrent calls share the engine's batches: equal up to the
        // last digits.
        for h in handles {
            let got = h.join().expect("thread").tokens;
            assert_eq!(got.len(), want.tokens.len());
            for (g, w) in got.iter().zip(&want.tokens) {
                assert!(
                    g.0 == w.0 && (g.1 - w.1).abs() < 1e-5,
                    "{got:?} vs {:?}",
                    want.tokens
                );
            }
        }
    });
}

/// A missing or wrong key is a 401 naming the engine; an unset variable is
/// named before anything is sent; a model the engine does not serve is
/// named with the ones it does.
fn keys_and_models(url: &str) {
    let mut keyless = RemoteSpec::openai(url);
    keyless.retries = 0;
    let err = RemoteEngine::connect(&keyless).err().expect("no key");
    assert!(
        matches!(err, RemoteError::Status { status: 401, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(url) && msg.contains("GET /v1/models") && msg.contains("Invalid API Key"),
        "{msg}"
    );

    std::env::set_var("IVG_REMOTE_OPENAI_TEST_WRONG_KEY", "not-the-key");
    let mut wrong = keyless.clone();
    wrong.api_key_env = Some("IVG_REMOTE_OPENAI_TEST_WRONG_KEY".into());
    let err = RemoteEngine::connect(&wrong).err().expect("wrong key");
    assert!(
        matches!(err, RemoteError::Status { status: 401, .. }),
        "{err:?}"
    );

    let mut unset = keyless.clone();
    unset.api_key_env = Some("IVG_REMOTE_OPENAI_TEST_UNSET_KEY".into());
    let err = RemoteEngine::connect(&unset)
        .err()
        .expect("unset key")
        .to_string();
    assert!(
        err.contains("`IVG_REMOTE_OPENAI_TEST_UNSET_KEY` is not set"),
        "{err}"
    );

    let mut named = spec(Protocol::OpenAi, url);
    named.model = Some("smollm2".into());
    RemoteEngine::connect(&named).expect("the alias is served");
    named.model = Some("gpt-4".into());
    let err = RemoteEngine::connect(&named)
        .err()
        .expect("not served")
        .to_string();
    assert!(
        err.contains("invalid `model`") && err.contains("not \"gpt-4\""),
        "{err}"
    );
}
