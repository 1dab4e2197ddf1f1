//! Requests join a running batch: after `begin(a)`, some observed tokens and
//! `append(b)`, every row of every value function kind (stepped and chunked)
//! has the values and guidance offsets of a fresh instance run on its prompt
//! alone with the same tokens, through forks, rows that leave, and a batch that
//! empties (`reorder(&[])`) and is joined again.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use ivg_models::{load_bert, LoadOptions};
use ivg_testkit::{tiny_model as model, word_tokenizer as tokenizer};
use ivg_value::{
    ClassifierValue, Feed, ImplicitPair, ImplicitValue, QValue, ScalarValue, TextLevelValue,
    ValueFunction,
};

/// Builds a fresh value function of one kind.
type Make<'a> = &'a dyn Fn() -> Box<dyn ValueFunction>;

/// One row of the joined batch: its prompt, the tokens it emitted, and an id
/// that picks its tokens (forked copies get their own).
#[derive(Clone)]
struct Row {
    prompt: &'static str,
    tokens: Vec<u32>,
    id: usize,
}

fn rows_of(prompts: &[&'static str], first_id: usize) -> Vec<Row> {
    prompts
        .iter()
        .enumerate()
        .map(|(i, &prompt)| Row {
            prompt,
            tokens: Vec::new(),
            id: first_id + i,
        })
        .collect()
}

fn texts(prompts: &[&str]) -> Vec<String> {
    prompts.iter().map(|p| p.to_string()).collect()
}

/// `steps` tokens for every row (all live), observed by the batch.
fn observe(v: &mut dyn ValueFunction, rows: &mut [Row], steps: usize) {
    for _ in 0..steps {
        let tokens: Vec<u32> = rows
            .iter()
            .map(|r| ((r.id * 13 + r.tokens.len() * 7) % 90 + 3) as u32)
            .collect();
        for (row, &t) in rows.iter_mut().zip(&tokens) {
            row.tokens.push(t);
        }
        v.observe(&tokens, &vec![true; rows.len()])
            .expect("observe");
    }
}

/// Largest difference of the batch's values (and guidance rows) to fresh
/// instances, each begun on one row's prompt and fed its tokens.
fn diff_to_alone(make: Make<'_>, v: &mut dyn ValueFunction, rows: &[Row]) -> f64 {
    let values = v.values().expect("values");
    assert_eq!(values.len(), rows.len(), "{}: one value per row", v.name());
    assert!(
        values.iter().all(|x| x.abs() > 1e-4),
        "{}: values {values:?} too small to tell rows apart",
        v.name()
    );
    let guidance = v.guidance().expect("guidance");
    let mut worst = 0f64;
    for (r, row) in rows.iter().enumerate() {
        let mut alone = make();
        alone.begin(&texts(&[row.prompt])).expect("begin alone");
        for &t in &row.tokens {
            alone.observe(&[t], &[true]).expect("observe alone");
        }
        let want = alone.values().expect("values alone")[0];
        worst = worst.max((values[r] - want).abs());
        match (&guidance, alone.guidance().expect("guidance alone")) {
            (Some(g), Some(want)) => {
                let d = (g.get(r).expect("row") - want.get(0).expect("row"))
                    .and_then(|d| d.abs())
                    .and_then(|d| d.max_all())
                    .and_then(|d| d.to_scalar::<f32>())
                    .expect("diff");
                worst = worst.max(d as f64);
            }
            (None, None) => {}
            _ => panic!("{}: guidance offered by one instance only", v.name()),
        }
    }
    worst
}

/// The join scenario for one kind; returns the largest difference seen.
fn join_equals_alone(make: Make<'_>) -> f64 {
    let mut v = make();
    let a = ["t5 t17 t3", "t40 t41 t42 t43 t44"];
    v.begin(&texts(&a)).expect("begin");
    let mut rows = rows_of(&a, 0);
    // Tokens still buffered by a chunked value when the newcomers join.
    observe(v.as_mut(), &mut rows, 3);
    // One prompt shorter and one longer than the running rows.
    let b = ["t9", "t20 t21 t22 t23 t24 t25 t26 t27 t28 t29"];
    v.append(&texts(&b)).expect("append");
    rows.extend(rows_of(&b, 2));
    observe(v.as_mut(), &mut rows, 4);
    let mut worst = diff_to_alone(make, v.as_mut(), &rows);

    // Rows 1 and 3 (the longest) leave, row 0 forks.
    let order = [2usize, 0, 0];
    v.reorder(&order).expect("reorder");
    rows = order.iter().map(|&r| rows[r].clone()).collect();
    rows[2].id = 10;
    observe(v.as_mut(), &mut rows, 2);
    // A request joins right after a boundary, with nothing buffered.
    worst = worst.max(diff_to_alone(make, v.as_mut(), &rows));
    let c = ["t60 t61 t62 t63"];
    v.append(&texts(&c)).expect("append after reorder");
    rows.extend(rows_of(&c, 11));
    observe(v.as_mut(), &mut rows, 2);
    worst = worst.max(diff_to_alone(make, v.as_mut(), &rows));

    // Everyone leaves, then a request starts the batch again.
    v.reorder(&[]).expect("drop every row");
    assert!(v.values().expect("values of no rows").is_empty());
    v.observe(&[], &[]).expect("observe no rows");
    v.append(&[]).expect("append no prompts");
    let d = ["t7 t8 t9"];
    v.append(&texts(&d)).expect("append to no rows");
    rows = rows_of(&d, 12);
    observe(v.as_mut(), &mut rows, 3);
    worst.max(diff_to_alone(make, v.as_mut(), &rows))
}

fn implicit(feed: Feed) -> Box<dyn ValueFunction> {
    let pair = ImplicitPair {
        tuned: model("llama"),
        tuned_template: "t1 t2 {prompt}".into(),
        reference: model("qwen2"),
        reference_template: "{prompt}".into(),
        tokenizer: tokenizer(),
        weight: 0.5,
    };
    Box::new(ImplicitValue::new("implicit", vec![pair], 2.0, feed).expect("value"))
}

/// A Q value over Gemma 3 (sliding window 4, shorter than most rows).
fn q(feed: Feed) -> Box<dyn ValueFunction> {
    Box::new(QValue::new("q", model("gemma3"), "t1 {prompt}", tokenizer(), 0.5, feed).expect("q"))
}

/// Largest difference allowed (6e-7 seen): values are f32 model outputs
/// (log-ratio sums of up to 9 tokens) kept in f64; a joined row's left-padded
/// prefill and a chunk scored in two forwards instead of one move them in the
/// last f32 bits.
const TOLERANCE: f64 = 5e-6;

fn check(name: &str, make: Make<'_>) {
    let worst = join_equals_alone(make);
    eprintln!("{name}: largest difference to alone runs {worst:e}");
    assert!(
        worst <= TOLERANCE,
        "{name}: joined rows differ from alone runs by {worst}"
    );
}

#[test]
fn implicit_rows_join_as_if_alone() {
    check("implicit stepped", &|| implicit(Feed::Stepped));
    check("implicit chunked", &|| implicit(Feed::Chunked));
}

#[test]
fn q_rows_join_as_if_alone() {
    check("q stepped", &|| q(Feed::Stepped));
    check("q chunked", &|| q(Feed::Chunked));
}

#[test]
fn scalar_rows_join_as_if_alone() {
    let m = Arc::new(common::scalar_model());
    check("scalar", &|| {
        Box::new(ScalarValue::new("scalar", m.clone(), "t1 {prompt}", tokenizer(), 2.0).expect("v"))
    });
}

#[test]
fn classifier_rows_join_as_if_alone() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ivg-models/tests/fixtures/tiny/bert");
    let bert = Arc::new(load_bert(&dir, &LoadOptions::default()).expect("bert"));
    let tok = tokenizer();
    check("classifier", &|| {
        Box::new(
            ClassifierValue::new("gold", bert.clone(), tok.clone(), tok.clone(), 1, 0.5)
                .expect("v"),
        )
    });
}

#[test]
fn text_level_rows_join_as_if_alone() {
    // The word tokenizer on both sides: re-tokenizing is the identity, so the
    // text-level path (a rebuilt inner value per boundary) is what is tested.
    check("text level", &|| {
        Box::new(TextLevelValue::new(q(Feed::Chunked), tokenizer()).expect("wrap"))
    });
}
