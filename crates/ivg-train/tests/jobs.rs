//! Whole `ivg train` jobs on the tiny fixtures and synthetic data with a
//! learnable signal: each objective's held-out metric improves, checkpoints
//! load back (with their tokenizer and resolved spec), fresh models repeat
//! under a seed, and bad configurations fail with the field named.

use std::path::{Path, PathBuf};

use ivg_models::{load_bert, load_causal_lm, LoadOptions};
use ivg_testkit::{fixture, write_word_tokenizer};
use ivg_tokenize::Tokenizer;
use ivg_train::{read_eval_log, run_job, JobReport, TrainSpec};

/// A model directory: a tiny fixture's weights with the word tokenizer (eos `t1`).
fn model_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(&format!("tiny/{name}/{f}")), dir.join(f)).expect("copy");
    }
    write_word_tokenizer(&dir);
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"eos_token": "t1", "bos_token": "t2"}"#,
    )
    .expect("cfg");
    dir
}

fn tokenizer(dir: &Path) -> Tokenizer {
    Tokenizer::from_file(&dir.join("tokenizer.json")).expect("tokenizer")
}

/// `n` JSONL rows from `row(i)`.
fn write_rows(path: &Path, n: usize, row: impl Fn(usize) -> serde_json::Value) -> PathBuf {
    let text: String = (0..n).map(|i| row(i).to_string() + "\n").collect();
    std::fs::write(path, text).expect("rows");
    path.to_path_buf()
}

/// Response words: `good` ones come from t10..t19, bad ones from t20..t29.
fn words(i: usize, good: bool, len: usize) -> String {
    let base = if good { 10 } else { 20 };
    (0..len)
        .map(|k| format!("t{}", base + (i * 7 + k * 3) % 10))
        .collect::<Vec<_>>()
        .join(" ")
}

fn spec(toml_text: &str) -> TrainSpec {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("spec: {e}\n{toml_text}"))
}

fn run(spec: &TrainSpec, kind: &str, tok: &Tokenizer) -> JobReport {
    let resolved = spec.clone().resolve(kind).expect("resolve");
    run_job(&resolved, tok, &|_| {}).expect("job")
}

fn job_toml(
    model: &str,
    train: &Path,
    eval: &Path,
    out: &Path,
    steps: usize,
    lr: f64,
    extra: &str,
) -> String {
    format!(
        r#"seed = 3
{extra}
[model]
{model}
[data]
train = "{}"
eval = "{}"
max_tokens = 24
batch_size = 8
[train]
out_dir = "{}"
eval_every = {steps}
checkpoint_every = {steps}
[train.optimizer]
lr = {lr}
total_steps = {steps}
warmup_steps = 2
"#,
        train.display(),
        eval.display(),
        out.display()
    )
}

fn first_last(report: &JobReport, metric: &str) -> (f64, f64) {
    let first = report.evals.first().expect("eval at step 0").metrics[metric];
    let last = report.evals.last().expect("final eval").metrics[metric];
    (first, last)
}

#[test]
fn sft_learns_and_its_checkpoint_loads_back() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = model_dir(tmp.path(), "llama");
    let row = |i: usize| serde_json::json!({"prompt": format!("t5 t{}", 40 + i % 5), "response": words(i, true, 4)});
    let train = write_rows(&tmp.path().join("train.jsonl"), 40, row);
    let eval = write_rows(&tmp.path().join("eval.jsonl"), 8, |i| row(i + 100));
    let out = tmp.path().join("out");
    let model = format!("init = \"pretrained\"\npath = \"{}\"", dir.display());
    let s = spec(&job_toml(&model, &train, &eval, &out, 30, 0.01, ""));
    let report = run(&s, "sft", &tokenizer(&dir));
    let (before, after) = first_last(&report, "loss");
    assert!(after < before - 1.0, "eval loss {before} -> {after}");
    assert_eq!(
        report.evals.iter().map(|e| e.step).collect::<Vec<_>>(),
        vec![0, 30]
    );
    assert_eq!(read_eval_log(&out).expect("log"), report.evals);
    let ckpt = out.join("checkpoint-30");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "train_config.json",
    ] {
        assert!(ckpt.join(f).is_file(), "{f} missing");
    }
    let back = Tokenizer::from_file(&ckpt.join("tokenizer.json")).expect("tokenizer back");
    assert_eq!(back.eos_ids(), &[1]);
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(ckpt.join("train_config.json")).expect("read"),
    )
    .expect("json");
    assert_eq!(saved["spec"]["objective"]["kind"], "sft");
    load_causal_lm(&out, &LoadOptions::default())
        .expect("the out dir loads as its latest checkpoint");
}

#[test]
fn fresh_models_take_the_tokenizer_vocabulary_and_repeat_under_a_seed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = model_dir(tmp.path(), "llama");
    let train = write_rows(
        &tmp.path().join("train.jsonl"),
        16,
        |i| serde_json::json!({"prompt": "", "response": words(i, true, 6)}),
    );
    let model = format!(
        "init = \"fresh\"\ntokenizer = \"{}\"\n[model.config]\nmodel_type = \"llama\"\nhidden_size = 16\nintermediate_size = 32\nnum_hidden_layers = 1\nnum_attention_heads = 2\nnum_key_value_heads = 1\nmax_position_embeddings = 32\ntie_word_embeddings = true",
        dir.display()
    );
    let weights = |out: &Path| {
        let s = spec(&job_toml(&model, &train, &train, out, 3, 0.01, ""));
        run(&s, "sft", &tokenizer(&dir));
        std::fs::read(out.join("checkpoint-3/model.safetensors")).expect("weights")
    };
    let (a, b) = (
        weights(&tmp.path().join("a")),
        weights(&tmp.path().join("b")),
    );
    assert_eq!(a, b, "same seed, same data: same weights");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("a/checkpoint-3/config.json")).expect("c"),
    )
    .expect("j");
    assert_eq!(config["vocab_size"], 96);
    assert_eq!(config["eos_token_id"], 1);
}

fn pair_rows(tmp: &Path) -> (PathBuf, PathBuf) {
    let row = |i: usize| serde_json::json!({"prompt": format!("t5 t{}", 40 + i % 5), "chosen": words(i, true, 3), "rejected": words(i + 1, false, 3)});
    (
        write_rows(&tmp.join("pairs.jsonl"), 48, row),
        write_rows(&tmp.join("pairs_eval.jsonl"), 16, |i| row(i + 200)),
    )
}

#[test]
fn dpo_starts_at_log_two_and_learns_the_preference() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = model_dir(tmp.path(), "llama");
    let (train, eval) = pair_rows(tmp.path());
    let model = format!("init = \"pretrained\"\npath = \"{}\"", dir.display());
    let extra = "[objective]\nkind = \"dpo\"\nbeta = 0.5";
    let s = spec(&job_toml(
        &model,
        &train,
        &eval,
        &tmp.path().join("out"),
        30,
        0.005,
        extra,
    ));
    let report = run(&s, "dpo", &tokenizer(&dir));
    let (before, after) = first_last(&report, "loss");
    assert!(
        (before - std::f64::consts::LN_2).abs() < 1e-5,
        "loss at init {before}"
    );
    assert!(after < 0.3, "dpo loss {after}");
    assert_eq!(report.evals.last().expect("eval").metrics["accuracy"], 1.0);
}

#[test]
fn reward_model_ranks_held_out_pairs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = model_dir(tmp.path(), "qwen2");
    let (train, eval) = pair_rows(tmp.path());
    let model = format!("init = \"pretrained\"\npath = \"{}\"", dir.display());
    let out = tmp.path().join("out");
    let report = run(
        &spec(&job_toml(&model, &train, &eval, &out, 30, 0.01, "")),
        "reward",
        &tokenizer(&dir),
    );
    let (before, after) = first_last(&report, "accuracy");
    assert!(
        after >= 0.95 && after > before,
        "pairwise accuracy {before} -> {after}"
    );
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("checkpoint-30/config.json")).expect("c"),
    )
    .expect("j");
    assert_eq!(config["architectures"][0], "Qwen2ForSequenceClassification");
    let (cfg, w) = ivg_models::open(&out, &LoadOptions::default()).expect("open");
    ivg_models::ScalarLm::load(&w, &cfg, "rm").expect("the reward model loads for inference");
}

#[test]
fn reward_model_on_a_bert_encoder_ranks_held_out_pairs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = bare_bert(tmp.path());
    let (train, eval) = pair_rows(tmp.path());
    let model = format!("init = \"pretrained\"\npath = \"{}\"", dir.display());
    let out = tmp.path().join("out");
    let report = run(
        &spec(&job_toml(&model, &train, &eval, &out, 30, 0.005, "")),
        "reward",
        &tokenizer(&dir),
    );
    let (before, after) = first_last(&report, "accuracy");
    assert!(
        after >= 0.95 && after > before,
        "pairwise accuracy {before} -> {after}"
    );
    // Saved as a one-label sequence classifier whose logit is the reward.
    let back = load_bert(&out, &LoadOptions::default()).expect("load back");
    let tok = tokenizer(&dir);
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&eval)
        .expect("eval")
        .lines()
        .map(|l| serde_json::from_str(l).expect("row"))
        .collect();
    let text = |r: &serde_json::Value, side: &str| {
        let t = format!(
            "{}{}",
            r["prompt"].as_str().expect("p"),
            r[side].as_str().expect("s")
        );
        tok.encode(&t, true).expect("ids")
    };
    let chosen: Vec<Vec<u32>> = rows.iter().map(|r| text(r, "chosen")).collect();
    let rejected: Vec<Vec<u32>> = rows.iter().map(|r| text(r, "rejected")).collect();
    let rc = back.label_scores(&chosen, 0).expect("chosen");
    let rr = back.label_scores(&rejected, 0).expect("rejected");
    let acc = rc.iter().zip(&rr).filter(|(a, b)| a > b).count() as f64 / rc.len() as f64;
    assert_eq!(
        acc, after,
        "the saved model ranks the held-out pairs as the job measured"
    );
}

#[test]
fn value_models_fit_rewards_in_both_forms_and_losses() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = model_dir(tmp.path(), "llama");
    let row = |i: usize| {
        let good = !i.is_multiple_of(3);
        serde_json::json!({"prompt": "t5 t6", "response": words(i, good, 4), "reward": if good { 1.5 } else { -1.5 }})
    };
    let train = write_rows(&tmp.path().join("v.jsonl"), 48, row);
    let eval = write_rows(&tmp.path().join("v_eval.jsonl"), 12, |i| row(i + 300));
    let model = format!("init = \"pretrained\"\npath = \"{}\"", dir.display());
    for (head, loss) in [("q", "regression"), ("scalar", "fudge")] {
        let extra = format!("[objective]\nkind = \"value\"\nhead = \"{head}\"\nloss = \"{loss}\"");
        let out = tmp.path().join(format!("out_{head}"));
        let report = run(
            &spec(&job_toml(&model, &train, &eval, &out, 30, 0.01, &extra)),
            "value",
            &tokenizer(&dir),
        );
        let (before, after) = first_last(&report, "loss");
        let last = &report.evals.last().expect("eval").metrics;
        assert!(after < before, "{head}/{loss}: {before} -> {after}");
        assert!(
            last["corr@1"] > 0.9 && last["corr@full"] > 0.9,
            "{head}/{loss}: {last:?}"
        );
    }
}

/// The tiny BERT as a `BertModel` checkpoint: no `bert.` prefix and no
/// classifier, like all-MiniLM-L6-v2.
fn bare_bert(tmp: &Path) -> PathBuf {
    let dir = model_dir(tmp, "bert");
    let src =
        candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
            .expect("load");
    let bare: std::collections::HashMap<String, candle_core::Tensor> = src
        .into_iter()
        .filter(|(k, _)| !k.starts_with("classifier"))
        .map(|(k, v)| (k.trim_start_matches("bert.").to_string(), v))
        .collect();
    candle_core::safetensors::save(&bare, dir.join("model.safetensors")).expect("save");
    dir
}

#[test]
fn classifier_fine_tunes_bert_with_a_fresh_head() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = bare_bert(tmp.path());
    let row = |i: usize| {
        let good = i.is_multiple_of(2);
        serde_json::json!({"text": words(i, good, 5), "label": u32::from(good)})
    };
    let train = write_rows(&tmp.path().join("c.jsonl"), 48, row);
    let eval = write_rows(&tmp.path().join("c_eval.jsonl"), 16, |i| row(i + 500));
    let model = format!("init = \"pretrained\"\npath = \"{}\"", dir.display());
    let out = tmp.path().join("out");
    let report = run(
        &spec(&job_toml(&model, &train, &eval, &out, 30, 0.005, "")),
        "classifier",
        &tokenizer(&dir),
    );
    let (_, after) = first_last(&report, "accuracy");
    assert_eq!(after, 1.0);
    let back = load_bert(&out, &LoadOptions::default()).expect("load back");
    assert!(
        back.classifier.is_some(),
        "saved as BertForSequenceClassification"
    );
}

#[test]
fn bad_jobs_name_the_problem() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = model_dir(tmp.path(), "llama");
    let train = write_rows(
        &tmp.path().join("c.jsonl"),
        4,
        |i| serde_json::json!({"text": "t3", "label": i}),
    );
    let model = format!("init = \"pretrained\"\npath = \"{}\"", dir.display());
    let out = tmp.path().join("out");
    let s = spec(&job_toml(
        &model,
        &train,
        &train,
        &out,
        3,
        0.01,
        "[objective]\nkind = \"dpo\"",
    ));
    let err = s
        .clone()
        .resolve("sft")
        .expect_err("kind mismatch")
        .to_string();
    assert!(
        err.contains("`dpo`") && err.contains("ivg train sft"),
        "{err}"
    );
    let bert = model_dir(tmp.path(), "bert");
    let s = spec(&job_toml(
        &format!("init = \"pretrained\"\npath = \"{}\"", bert.display()),
        &train,
        &train,
        &out,
        3,
        0.01,
        "",
    ));
    let err = run_job(
        &s.resolve("classifier").expect("ok"),
        &tokenizer(&bert),
        &|_| {},
    )
    .expect_err("label 2")
    .to_string();
    assert!(
        err.contains("row 3") && err.contains("label") && err.contains("2"),
        "{err}"
    );
    let bad = job_toml(&model, &train, &train, &out, 3, 0.01, "")
        .replace("batch_size = 8", "batch_size = 0");
    let err = spec(&bad).resolve("sft").expect_err("batch 0").to_string();
    assert!(err.contains("data.batch_size"), "{err}");
    let sft = write_rows(
        &tmp.path().join("s.jsonl"),
        2,
        |_| serde_json::json!({"prompt": "t3", "response": "t4"}),
    );
    let long = job_toml(&model, &sft, &sft, &out, 3, 0.01, "")
        .replace("max_tokens = 24", "max_tokens = 65");
    let err = run_job(
        &spec(&long).resolve("sft").expect("ok"),
        &tokenizer(&dir),
        &|_| {},
    );
    let err = err.expect_err("longer than the context").to_string();
    assert!(
        err.contains("data.max_tokens is 65") && err.contains("at most 64"),
        "{err}"
    );
    let typo =
        job_toml(&model, &train, &train, &out, 3, 0.01, "").replace("max_tokens", "max_token");
    assert!(toml::from_str::<TrainSpec>(&typo)
        .expect_err("typo")
        .to_string()
        .contains("max_token"));
    let s = spec(&job_toml(&model, &train, &train, &out, 3, 0.01, ""));
    let err = run_job(&s.resolve("sft").expect("ok"), &tokenizer(&dir), &|_| {})
        .expect_err("rows")
        .to_string();
    assert!(err.contains("c.jsonl:1") && err.contains("prompt"), "{err}");
}
