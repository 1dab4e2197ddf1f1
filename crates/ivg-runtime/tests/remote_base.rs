//! A remote base (a real llama.cpp server on loopback, serving an F32 copy
//! of SmolLM2's GGUF) under the step-wise engine, against the same weights
//! in process, with the demo's training-free implicit value as the guide:
//! greedy paths equal token for token, EFT over the whole vocabulary gives
//! the in-process distribution, the calls made are the budget the method
//! promises, and a dead engine fails only the requests that needed it.

use std::path::Path;
use std::sync::Arc;

use ivg_decode::{
    ChunkRanking, Engine, Event, GuidanceConfig, GuideSetId, GuidedOutput, Method, Request,
    RequestId, Sampler, SamplingConfig, TokenPolicy,
};
use ivg_runtime::{
    BaseRef, GuideSet, GuideSpec, LoadedBase, ModelRef, PairSpec, PromptTemplate, Quant,
    RemoteBaseSpec,
};
use ivg_testkit::llama::{quantize, Server};

const PROMPTS: [&str; 2] = ["I watched this film and", "The acting in this movie"];

struct Setup {
    _dir: tempfile::TempDir,
    gguf: std::path::PathBuf,
    local: LoadedBase,
    guides: Arc<GuideSet>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let q4 = ivg_runtime::resolve_path(Path::new("asset:smollm2")).expect("asset");
    let gguf = quantize(&q4, &dir.path().join("smollm2-f32.gguf"), "F32");
    let model = ModelRef::new(&gguf).with_quant(Quant::F32);
    let local = BaseRef::Local(model.clone())
        .load(None)
        .expect("local base");
    let template = |t: &str| PromptTemplate::new(t).expect("template");
    let pair = PairSpec {
        tuned_template: template(
            "Here is a glowing, enthusiastic, positive movie review from imdb: {prompt}",
        ),
        reference_template: template("Here is a movie review from imdb: {prompt}"),
        ..PairSpec::new(model)
    };
    let spec = GuideSpec {
        implicit: vec![pair],
        ..GuideSpec::default()
    };
    let guides = Arc::new(GuideSet::load(&spec, local.tokenizer.clone()).expect("guides"));
    Setup {
        _dir: dir,
        gguf,
        local,
        guides,
    }
}

fn remote(server: &Server, setup: &Setup, top_k: usize, retries: u32) -> LoadedBase {
    let mut spec = RemoteBaseSpec::llama_cpp(server.url.clone());
    spec.top_k = top_k;
    spec.engine.retries = retries;
    BaseRef::Remote(spec)
        .load(Some(&ModelRef::new(&setup.gguf)))
        .expect("remote base")
}

fn config(method: Method, temperature: f64, max_new_tokens: usize) -> GuidanceConfig {
    let shape = GuidanceConfig {
        token: TokenPolicy::Base,
        chunk: ChunkRanking::None,
        width: 2,
        successors: 2,
        chunk_len: Some(4),
        max_new_tokens,
        sampling: SamplingConfig {
            temperature,
            top_k: None,
            top_p: None,
        },
        seed: 7,
        stop_strings: Vec::new(),
    };
    method.config(&shape, 1.0)
}

fn engine<'a>(base: &'a LoadedBase, guides: &Arc<GuideSet>) -> (Engine<'a>, GuideSetId) {
    let mut engine = Engine::with_base(base.model(), Some(&base.tokenizer), base.stop_ids());
    let set = engine.add_guides(guides.clone());
    (engine, set)
}

fn request(base: &LoadedBase, p: usize, config: &GuidanceConfig, set: GuideSetId) -> Request {
    let ids = base.tokenizer.encode(PROMPTS[p], false).expect("encode");
    Request::new(PROMPTS[p], ids, config.clone(), p, Some(set))
}

/// Every prompt under `config`, as one batch.
fn run(base: &LoadedBase, guides: &Arc<GuideSet>, config: &GuidanceConfig) -> Vec<GuidedOutput> {
    let (mut engine, set) = engine(base, guides);
    for p in 0..PROMPTS.len() {
        engine.admit(request(base, p, config, set)).expect("admit");
    }
    let mut out: Vec<Option<GuidedOutput>> = vec![None; PROMPTS.len()];
    while !engine.is_idle() {
        for event in engine.step().expect("step") {
            match event {
                Event::Finished { id, output } => out[id as usize] = Some(output),
                Event::Failed { id, error } => panic!("request {id} failed: {error}"),
                _ => {}
            }
        }
    }
    out.into_iter().map(|o| o.expect("finished")).collect()
}

#[test]
fn remote_base_decodes_as_in_process_within_its_budget() {
    let setup = setup();
    let server = Server::start(&setup.gguf, 8192, 8, &[]);
    let remote = remote(&server, &setup, 20, 3);

    // Greedy paths: Base, CBSi and EFTi+CBSi token for token (EFT on the
    // top-20: greedy is certified when no outside token can win).
    for method in [Method::Base, Method::CbsI, Method::EftICbsI, Method::EftI] {
        let c = config(method, 0.0, 24);
        let here = run(&setup.local, &setup.guides, &c);
        let there = run(&remote, &setup.guides, &c);
        for (a, b) in here.iter().zip(&there) {
            assert_eq!(a.tokens, b.tokens, "{}: greedy paths part", method.name());
            assert!((a.value - b.value).abs() < 1e-4, "{}", method.name());
        }
    }

    // Budget: CBS makes at most W * ceil(T / L) chunk calls per prompt and
    // no top-k call; EFT one top-k call per token; the prompt cache serves.
    let before = remote.remote().expect("remote").stats();
    let cbs = config(Method::CbsI, 1.0, 24);
    let out = run(&remote, &setup.guides, &cbs);
    let after = remote.remote().expect("remote").stats();
    let budget = (PROMPTS.len() * 2 * 24usize.div_ceil(4)) as u64;
    let calls = after.chunk_calls - before.chunk_calls;
    eprintln!("CBSi, 2 prompts, W = K = 2, L = 4, T = 24: {calls} chunk calls (budget {budget})");
    assert!(
        calls <= budget && calls >= PROMPTS.len() as u64,
        "{calls} calls"
    );
    assert_eq!(after.topk_calls, before.topk_calls);
    assert!(out.iter().all(|o| !o.tokens.is_empty()));

    let eft = config(Method::EftI, 1.0, 16);
    let out = run(&remote, &setup.guides, &eft);
    let later = remote.remote().expect("remote").stats();
    let tokens: usize = out.iter().map(|o| o.tokens.len()).sum();
    assert_eq!(later.topk_calls - after.topk_calls, tokens as u64);
    let (sent, cached) = (
        later.prompt_tokens - after.prompt_tokens,
        later.cached_tokens - after.cached_tokens,
    );
    eprintln!("EFTi: {tokens} tokens, {sent} prompt tokens sent, {cached} from the cache");
    assert!(
        cached * 2 > sent,
        "the prompt cache served {cached} of {sent}"
    );

    eft_over_the_whole_vocabulary(&setup, &server);
}

/// EFT with k = the vocabulary: the engine's first-token policy is the
/// in-process one (total variation < 1e-3), and the coverage it reports is
/// the whole base mass with a zero bound.
fn eft_over_the_whole_vocabulary(setup: &Setup, server: &Server) {
    let vocab = setup.local.tokenizer.vocab_size();
    let remote = remote(server, setup, vocab, 3);
    let c = config(Method::EftI, 1.0, 1);
    let first = |base: &LoadedBase| {
        let (mut engine, set) = engine(base, &setup.guides);
        engine.admit(request(base, 0, &c, set)).expect("admit");
        let logits = engine.policy_logits().expect("policy");
        let row: Vec<f32> = logits.get(0).and_then(|r| r.to_vec1()).expect("row");
        Sampler::new(c.sampling.clone(), 0)
            .expect("sampler")
            .distribution(&row)
            .expect("distribution")
    };
    let (here, there) = (first(&setup.local), first(&remote));
    let tv = 0.5
        * here
            .iter()
            .zip(&there)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>();
    eprintln!("EFTi over the engine's whole vocabulary: TV to in-process {tv:.2e}");
    assert!(tv < 1e-3, "TV {tv}");

    let (mut engine, set) = engine(&remote, &setup.guides);
    engine.admit(request(&remote, 0, &c, set)).expect("admit");
    let events = engine.step().expect("step");
    let cover = events
        .iter()
        .find_map(|e| match e {
            Event::TopK { rows, .. } => Some(rows[0]),
            _ => None,
        })
        .expect("a top-k event");
    assert!(
        cover.tv_bound == 0.0 && (cover.base_mass - 1.0).abs() < 1e-3,
        "{cover:?}"
    );
}

#[test]
fn a_dead_engine_fails_only_the_requests_that_call_it() {
    let setup = setup();
    let mut server = Server::start(&setup.gguf, 4096, 4, &[]);
    let remote = remote(&server, &setup, 20, 1);
    let (mut engine, set) = engine(&remote, &setup.guides);
    // CBS fetches 8 tokens per chunk and then replays them; EFT calls the
    // engine at every token.
    let mut cbs = config(Method::CbsI, 1.0, 16);
    cbs.chunk_len = Some(8);
    let eft = config(Method::EftI, 1.0, 16);
    let a = engine.admit(request(&remote, 0, &cbs, set)).expect("admit");
    let b = engine.admit(request(&remote, 1, &eft, set)).expect("admit");
    let mut streamed: Vec<(RequestId, usize)> = Vec::new();
    let mut record = |events: Vec<Event>, failures: &mut Vec<(RequestId, String)>| {
        let mut finished = Vec::new();
        for e in events {
            match e {
                Event::Tokens { id, tokens } => streamed.push((id, tokens.len())),
                Event::Failed { id, error } => failures.push((id, error)),
                Event::Finished { id, .. } => finished.push(id),
                _ => {}
            }
        }
        finished
    };
    let mut failures = Vec::new();
    for _ in 0..2 {
        record(engine.step().expect("step"), &mut failures);
    }
    server.kill();
    record(engine.step().expect("step"), &mut failures);
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (id, error) = &failures[0];
    assert_eq!(*id, b, "the EFT request fails, the CBS one goes on");
    assert!(
        error.contains(&server.url),
        "the error names the engine: {error}"
    );
    assert!(engine.requests() == 1 && engine.rows() == 4);
    // The engine comes back before CBS needs its next chunk.
    server.restart();
    let mut done = Vec::new();
    while !engine.is_idle() {
        done.extend(record(engine.step().expect("step"), &mut failures));
    }
    assert_eq!(done, [a]);
    assert_eq!(failures.len(), 1);
    // New requests succeed.
    let c = engine.admit(request(&remote, 1, &eft, set)).expect("admit");
    while !engine.is_idle() {
        done.extend(record(engine.step().expect("step"), &mut failures));
    }
    assert_eq!(done, [a, c], "{failures:?}");
    assert!(
        streamed.iter().any(|&(id, n)| id == b && n > 0),
        "b streamed before failing"
    );
}
