//! The step-wise engine (continuous batching): a request admitted while others
//! run, at their first step, mid-chunk or at a chunk boundary, yields exactly
//! what it yields alone with the same seed, for every method of the matrix and
//! for batches that mix methods; cancelling frees a request's rows at once; the
//! streamed tokens add up to the output.

use std::collections::HashMap;
use std::sync::Arc;

use ivg_decode::{
    ChunkRanking, ChunkTrace, DecodeError, Engine, Event, GuidanceConfig, GuideSource,
    GuidedOutput, Method, Request, RequestId, SamplingConfig, TokenPolicy, ValueRole,
};
use ivg_models::CausalLm;
use ivg_testkit::{ids, tiny_model as model, word_tokenizer as tokenizer};
use ivg_tokenize::Tokenizer;
use ivg_value::{Feed, ImplicitPair, ImplicitValue, QValue, ValueFunction};

const PROMPTS: [&str; 4] = ["t5 t17 t3", "t40 t41 t42 t43 t44", "t9", "t12 t30"];
const STOPS: [u32; 2] = [81, 91];

/// The guides of the naive-reference test: a tuned/reference pair under two
/// templates with weight 1.5, and a Q model under a third template.
struct TinyGuides {
    tokenizer: Arc<Tokenizer>,
    tuned: Arc<CausalLm>,
    reference: Arc<CausalLm>,
    q: Arc<CausalLm>,
}

impl TinyGuides {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            tokenizer: tokenizer(),
            tuned: model("llama"),
            reference: model("qwen2"),
            q: model("gpt2"),
        })
    }
}

impl GuideSource for TinyGuides {
    fn name(&self) -> &str {
        "tiny"
    }

    fn has(&self, _role: ValueRole) -> bool {
        true
    }

    fn build(&self, role: ValueRole, feed: Feed) -> Result<Box<dyn ValueFunction>, DecodeError> {
        Ok(match role {
            ValueRole::Implicit => {
                let pair = ImplicitPair {
                    tuned: self.tuned.clone(),
                    tuned_template: "t7 {prompt}".into(),
                    reference: self.reference.clone(),
                    reference_template: "{prompt}".into(),
                    tokenizer: self.tokenizer.clone(),
                    weight: 1.5,
                };
                Box::new(ImplicitValue::new("implicit", vec![pair], 0.7, feed)?)
            }
            ValueRole::Explicit => Box::new(QValue::new(
                "q",
                self.q.clone(),
                "{prompt} t1",
                self.tokenizer.clone(),
                2.0,
                feed,
            )?),
        })
    }
}

fn config(method: Method, seed: u64) -> GuidanceConfig {
    let shape = GuidanceConfig {
        token: TokenPolicy::Base,
        chunk: ChunkRanking::None,
        width: 2,
        successors: 2,
        chunk_len: Some(3),
        max_new_tokens: 10,
        sampling: SamplingConfig {
            temperature: 1.0,
            top_k: None,
            top_p: None,
        },
        seed,
        stop_strings: Vec::new(),
    };
    method.config(&shape, 2.0)
}

/// What one request produced: its output, its streamed tokens and its traces.
#[derive(Debug, Default, Clone)]
struct Outcome {
    output: Option<GuidedOutput>,
    streamed: Vec<u32>,
    traces: Vec<ChunkTrace>,
}

/// One request of a scenario: the prompt, its config and the step at which it
/// is admitted.
#[derive(Clone)]
struct Arrival {
    prompt: usize,
    config: GuidanceConfig,
    at_step: usize,
}

fn request(a: &Arrival, guides: ivg_decode::GuideSetId) -> Request {
    Request::new(
        PROMPTS[a.prompt],
        ids(PROMPTS[a.prompt]),
        a.config.clone(),
        a.prompt,
        Some(guides),
    )
}

/// Runs the arrivals, admitting each before the step `at_step`; returns the
/// outcomes in arrival order and the rows in the batch after each step.
fn run(base: &CausalLm, tok: &Tokenizer, arrivals: &[Arrival]) -> (Vec<Outcome>, Vec<usize>) {
    let mut engine = Engine::new(base, Some(tok), STOPS.to_vec()).with_traces();
    let guides = engine.add_guides(TinyGuides::new());
    let mut ids_of: HashMap<RequestId, usize> = HashMap::new();
    let mut outcomes = vec![Outcome::default(); arrivals.len()];
    let mut rows = Vec::new();
    let mut step = 0;
    while step == 0 || !engine.is_idle() || arrivals.iter().any(|a| a.at_step >= step) {
        for (i, a) in arrivals
            .iter()
            .enumerate()
            .filter(|(_, a)| a.at_step == step)
        {
            let id = engine.admit(request(a, guides)).expect("admit");
            ids_of.insert(id, i);
        }
        for event in engine.step().expect("step") {
            record(&mut outcomes, &ids_of, event);
        }
        rows.push(engine.rows());
        step += 1;
        assert!(step < 200, "the engine does not finish");
    }
    (outcomes, rows)
}

fn record(outcomes: &mut [Outcome], ids_of: &HashMap<RequestId, usize>, event: Event) {
    match event {
        Event::Tokens { id, tokens } => outcomes[ids_of[&id]].streamed.extend(tokens),
        Event::Chunk { id, trace } => outcomes[ids_of[&id]].traces.push(trace),
        Event::Finished { id, output } => {
            let o = &mut outcomes[ids_of[&id]];
            assert!(o.output.is_none(), "request {id} finished twice");
            o.output = Some(output);
        }
        Event::TopK { .. } => panic!("an in-process base reported a top-k"),
        Event::Failed { id, error } => panic!("request {id} failed: {error}"),
    }
}

fn alone(base: &CausalLm, tok: &Tokenizer, a: &Arrival) -> Outcome {
    let one = Arrival {
        at_step: 0,
        ..a.clone()
    };
    run(base, tok, &[one]).0.remove(0)
}

/// Values agree to f32 rounding: a row's log-probabilities come from forwards
/// over batches of other shapes (another number of rows, other padding), whose
/// matrix kernels may round the last bit differently. Tokens must be equal.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

fn assert_same(label: &str, got: &Outcome, want: &Outcome) {
    let g = got
        .output
        .as_ref()
        .unwrap_or_else(|| panic!("{label}: no output"));
    let w = want.output.as_ref().expect("alone output");
    assert_eq!(g.tokens, w.tokens, "{label}: tokens");
    assert_eq!(g.finish, w.finish, "{label}: finish");
    assert!(
        close(g.value, w.value),
        "{label}: value {} vs {}",
        g.value,
        w.value
    );
    assert_eq!(
        got.streamed, g.tokens,
        "{label}: streamed tokens add up to the output"
    );
    assert_eq!(got.traces.len(), want.traces.len(), "{label}: boundaries");
    for (t, u) in got.traces.iter().zip(&want.traces) {
        assert_eq!(t.step, u.step, "{label}: boundary step");
        for (c, d) in t.candidates.iter().zip(&u.candidates) {
            assert_eq!(
                c.tokens, d.tokens,
                "{label}: chunk {} candidate tokens",
                t.chunk
            );
            assert_eq!(
                c.survived, d.survived,
                "{label}: chunk {} survivors",
                t.chunk
            );
            assert!(
                close(c.value, d.value),
                "{label}: chunk {} value {} vs {}",
                t.chunk,
                c.value,
                d.value
            );
        }
    }
}

/// Staggered arrivals: the second request joins at the first's first step,
/// the third mid-chunk (step 1 of chunk 0 is step 2), the fourth at a chunk
/// boundary of the first (its boundaries are at steps 3, 6, 9).
fn staggered(configs: [GuidanceConfig; 4]) -> Vec<Arrival> {
    configs
        .into_iter()
        .enumerate()
        .map(|(i, config)| Arrival {
            prompt: i,
            config,
            at_step: i,
        })
        .collect()
}

#[test]
fn a_request_joining_a_running_batch_decodes_as_alone_for_every_method() {
    let base = model("gemma3");
    let tok = tokenizer();
    let mut any_stream_before_end = false;
    for method in Method::ALL {
        for seed in [3, 4] {
            let c = config(method, seed);
            let arrivals = staggered([c.clone(), c.clone(), c.clone(), c]);
            let (outcomes, _) = run(&base, &tok, &arrivals);
            for (a, got) in arrivals.iter().zip(&outcomes) {
                let label = format!(
                    "{} seed {seed} prompt {} (joins at step {})",
                    method.name(),
                    a.prompt,
                    a.at_step
                );
                assert_same(&label, got, &alone(&base, &tok, a));
            }
            any_stream_before_end |= method == Method::Ivg
                && outcomes
                    .iter()
                    .any(|o| o.traces.len() > 1 && !o.streamed.is_empty());
        }
    }
    assert!(any_stream_before_end);
}

#[test]
fn mixed_methods_share_one_batch_and_decode_as_alone() {
    let base = model("gemma3");
    let tok = tokenizer();
    for seed in [5, 6] {
        let configs = [
            config(Method::Ivg, seed),
            config(Method::Base, seed),
            config(Method::EftI, seed),
            config(Method::CbsE, seed),
        ];
        let (outcomes, rows) = run(&base, &tok, &staggered(configs.clone()));
        // IVG's 4 rows, Base's 1, EFTi's 1 and CBSe's 4 decode in one batch.
        assert!(rows.contains(&10), "rows per step: {rows:?}");
        for (a, got) in staggered(configs).iter().zip(&outcomes) {
            let label = format!("mixed seed {seed} prompt {}", a.prompt);
            assert_same(&label, got, &alone(&base, &tok, a));
        }
        // The same mix admitted at once, in another order, changes nothing.
        let mut at_once = staggered([
            config(Method::EftI, seed),
            config(Method::CbsE, seed),
            config(Method::Ivg, seed),
            config(Method::Base, seed),
        ]);
        at_once.iter_mut().for_each(|a| a.at_step = 0);
        let (together, _) = run(&base, &tok, &at_once);
        for (a, got) in at_once.iter().zip(&together) {
            assert_same(
                &format!("at once, prompt {}", a.prompt),
                got,
                &alone(&base, &tok, a),
            );
        }
    }
}

#[test]
fn cancelling_frees_the_rows_and_leaves_the_others_unchanged() {
    let base = model("gemma3");
    let tok = tokenizer();
    let arrivals = staggered([
        config(Method::Ivg, 7),
        config(Method::CbsI, 7),
        config(Method::EftI, 7),
        config(Method::Base, 7),
    ]);
    let mut engine = Engine::new(&base, Some(&tok), STOPS.to_vec()).with_traces();
    let guides = engine.add_guides(TinyGuides::new());
    let mut ids_of = HashMap::new();
    let mut outcomes = vec![Outcome::default(); 4];
    for a in &arrivals {
        ids_of.insert(engine.admit(request(a, guides)).expect("admit"), a.prompt);
    }
    engine
        .step()
        .expect("step")
        .into_iter()
        .for_each(|e| record(&mut outcomes, &ids_of, e));
    engine
        .step()
        .expect("step")
        .into_iter()
        .for_each(|e| record(&mut outcomes, &ids_of, e));
    // Cancel the CBSi request mid-chunk: its 4 rows leave at once.
    let before = engine.rows();
    assert!(engine.cancel(1).expect("cancel"));
    assert_eq!(engine.rows(), before - 4);
    assert!(!engine.cancel(1).expect("cancel twice"));
    // A queued request can be cancelled before it starts.
    let late = engine.admit(request(&arrivals[1], guides)).expect("admit");
    assert_eq!(engine.queued(), 1);
    assert!(engine.cancel(late).expect("cancel queued"));
    assert_eq!(engine.queued(), 0);
    while !engine.is_idle() {
        engine
            .step()
            .expect("step")
            .into_iter()
            .for_each(|e| record(&mut outcomes, &ids_of, e));
    }
    assert!(outcomes[1].output.is_none(), "a cancelled request finished");
    for i in [0, 2, 3] {
        assert_same(
            &format!("prompt {i}"),
            &outcomes[i],
            &alone(&base, &tok, &arrivals[i]),
        );
    }
    assert_eq!(engine.rows(), 0);
}

#[test]
fn bad_requests_are_refused_at_admission() {
    let base = model("gemma3");
    let tok = tokenizer();
    let mut engine = Engine::new(&base, Some(&tok), STOPS.to_vec());
    let guides = engine.add_guides(TinyGuides::new());
    let mut zero_width = config(Method::CbsI, 0);
    zero_width.width = 0;
    let err = engine
        .admit(Request::new("t5", ids("t5"), zero_width, 0, Some(guides)))
        .expect_err("width 0");
    assert!(err.to_string().contains("width"), "{err}");
    let err = engine
        .admit(Request::new(
            "t5",
            ids("t5"),
            config(Method::Ivg, 0),
            0,
            None,
        ))
        .expect_err("no guides");
    assert!(err.to_string().contains("guide"), "{err}");
    let err = engine
        .admit(Request::new(
            "",
            Vec::new(),
            config(Method::Base, 0),
            0,
            None,
        ))
        .expect_err("empty prompt");
    assert!(err.to_string().contains("prompt"), "{err}");
    assert!(engine.is_idle());
}
