//! `ivg experiment` end to end at toy scale (experiments/toy.toml): every
//! stage of the sentiment pipeline on the real assets with tiny guides and a
//! handful of prompts; then the properties the issue asks for: cached stages
//! are skipped, one method's evaluation reruns to the same samples, and a
//! run killed mid-evaluation resumes without losing or changing a sample.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ivg(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ivg"));
    cmd.current_dir(repo()).args(args);
    cmd
}

fn ok(args: &[&str]) -> Output {
    let out = ivg(args).output().expect("run ivg");
    assert!(
        out.status.success(),
        "ivg {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The toy experiment with its work and results directories under `dir`.
fn toy_config(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("experiments/toy.toml")).expect("toy.toml");
    let work = dir.join("work");
    let text = text
        .replace(
            "work_dir = \"runs/toy\"",
            &format!("work_dir = {:?}", work.to_str().expect("utf8")),
        )
        .replace(
            "results_dir = \"runs/toy/results\"",
            &format!(
                "results_dir = {:?}",
                dir.join("results").to_str().expect("utf8")
            ),
        );
    let path = dir.join(name);
    std::fs::write(&path, edit(text)).expect("write config");
    path
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn jsonl(p: &Path) -> Vec<serde_json::Value> {
    read(p)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

const METHODS: [&str; 10] = [
    "base",
    "boni",
    "bone",
    "efti",
    "efte",
    "cbsi",
    "cbse",
    "efti+cbsi",
    "ivg",
    "tuned",
];

/// A samples file without its timings (the only field a rerun may change).
fn untimed(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json line");
            v.as_object_mut().expect("object").remove("seconds");
            v
        })
        .collect()
}

/// Asserts two snapshots of the evaluation stages hold the same samples.
fn assert_same(a: &[(String, Vec<serde_json::Value>)], b: &[(String, Vec<serde_json::Value>)]) {
    let names = |x: &[(String, Vec<serde_json::Value>)]| {
        x.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(a), names(b));
    for ((name, x), (_, y)) in a.iter().zip(b) {
        assert!(x == y, "{name}: samples differ\n{x:#?}\nvs\n{y:#?}");
    }
}

/// Every evaluation stage's samples (untimed), by stage name.
fn eval_files(work: &Path) -> Vec<(String, Vec<serde_json::Value>)> {
    let mut out = Vec::new();
    for group in ["eval", "ablation"] {
        let mut names: Vec<_> = std::fs::read_dir(work.join(group))
            .expect("stage group")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
            .collect();
        names.sort();
        for n in names {
            let p = work.join(group).join(&n).join("samples.jsonl");
            out.push((format!("{group}/{n}"), untimed(&read(&p))));
        }
    }
    out
}

#[test]
fn toy_sentiment_pipeline_runs_caches_reproduces_and_resumes() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = toy_config(dir.path(), "toy.toml", |t| t);
    let cfg = config.to_str().expect("utf8");
    let work = dir.path().join("work");
    let results = dir.path().join("results");
    ok(&["--threads", "1", "experiment", "run", cfg]);

    // The report: every method on the same 3 prompts.
    let summary: serde_json::Value =
        serde_json::from_str(&read(&results.join("summary.json"))).expect("summary");
    let names: Vec<&str> = summary["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .map(|m| m["method"].as_str().expect("name"))
        .collect();
    assert_eq!(names, METHODS);
    for m in summary["methods"].as_array().expect("methods") {
        assert_eq!(m["reward"]["n"], 3, "{m}");
        let wr = &m["win_rate"];
        assert!(wr.is_null() == (m["method"] == "base"), "{m}");
    }
    assert_eq!(summary["ablation"].as_array().expect("ablation").len(), 4);
    let samples = jsonl(&results.join("samples.jsonl"));
    assert_eq!(samples.len(), 30);
    for m in METHODS {
        let rows: Vec<_> = samples.iter().filter(|s| s["method"] == m).collect();
        let idx: Vec<u64> = rows
            .iter()
            .map(|s| s["index"].as_u64().expect("i"))
            .collect();
        assert_eq!(idx, [0, 1, 2], "{m}");
        for (row, base) in rows.iter().zip(&samples[..3]) {
            assert_eq!(row["prompt"], base["prompt"], "{m}: same prompts");
            assert!(row["gold_reward"].as_f64().expect("reward").is_finite());
        }
    }
    let report = read(&results.join("report.md"));
    for needle in [
        "## The paper's ordering",
        "| ivg >= cbse |",
        "| cbse > cbsi |",
        "## Ablation",
        "efti beta=0.5",
        "cbse L=2",
        "| explicit value's data | 12 train and 4 held-out texts (train-side review openings)",
    ] {
        assert!(
            report.contains(needle),
            "report lacks {needle:?}:\n{report}"
        );
    }
    assert!(results.join("plot.svg").exists() && results.join("config/toy.toml").exists());
    assert!(read(&results.join("revision.txt")).trim().len() >= 7);

    // The explicit value learns from review openings (`value_texts =
    // "reviews"`): train-side reviews after the 12 prompt ones, each row a
    // prompt and its continuation, the last 4 held out.
    let reviews = jsonl(&work.join("data/imdb_train.jsonl"));
    let value_rows: Vec<_> = ["train.jsonl", "heldout.jsonl"]
        .iter()
        .flat_map(|f| jsonl(&work.join("value_data").join(f)))
        .collect();
    assert_eq!(value_rows.len(), 16);
    assert_eq!(jsonl(&work.join("value_data/heldout.jsonl")).len(), 4);
    for (j, row) in value_rows.iter().enumerate() {
        let review = reviews[12 + j]["text"].as_str().expect("text");
        let (prompt, response) = (
            row["prompt"].as_str().expect("prompt"),
            row["response"].as_str().expect("response"),
        );
        assert!(!prompt.is_empty() && !response.is_empty(), "{row}");
        assert!(
            review.starts_with(&format!("{prompt}{response}")),
            "row {j} is not review {}'s opening: {row}",
            12 + j
        );
        assert!(row["reward"].as_f64().expect("reward").is_finite());
    }

    // The gold reward is the classifier's logit margin on prompt + output:
    // `ivg label` with the gold checkpoint gives the same numbers.
    let rows = dir.path().join("rows.jsonl");
    let text: Vec<String> = samples
        .iter()
        .map(|s| serde_json::json!({ "prompt": s["prompt"], "response": s["output"] }).to_string())
        .collect();
    std::fs::write(&rows, text.join("\n") + "\n").expect("rows");
    let labelled = dir.path().join("labelled.jsonl");
    let gold = work.join("gold");
    ok(&[
        "label",
        "--model",
        gold.to_str().expect("utf8"),
        "--data",
        rows.to_str().expect("utf8"),
        "--out",
        labelled.to_str().expect("utf8"),
    ]);
    for (s, l) in samples.iter().zip(jsonl(&labelled)) {
        let (a, b) = (
            s["gold_reward"].as_f64().expect("a"),
            l["reward"].as_f64().expect("b"),
        );
        assert!((a - b).abs() < 1e-4, "gold reward {a} vs ivg label {b}");
    }

    // A second run finds every stage cached and changes nothing.
    let before = eval_files(&work);
    let samples_before = untimed(&read(&results.join("samples.jsonl")));
    let again = ok(&["experiment", "run", cfg]);
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(!log.contains("running"), "a cached stage reran:\n{log}");
    assert!(untimed(&read(&results.join("samples.jsonl"))) == samples_before);
    let status = String::from_utf8_lossy(&ok(&["experiment", "status", cfg]).stdout).into_owned();
    assert_eq!(status.lines().count(), 25, "{status}");
    assert!(status.lines().all(|l| l.contains(" cached ")), "{status}");

    // Rerunning one method's evaluation reproduces its samples.
    let redo = ok(&["experiment", "run", cfg, "--redo", "eval/cbse"]);
    assert!(String::from_utf8_lossy(&redo.stderr).contains("[stage eval/cbse] running"));
    assert_same(&eval_files(&work), &before);

    // A torn samples file (a kill mid-write) resumes to the same rows.
    let ivg_file = work.join("eval/ivg/samples.jsonl");
    let full = read(&ivg_file);
    let first_end = full.find('\n').expect("a line") + 1;
    std::fs::write(&ivg_file, &full[..first_end + 10]).expect("tear");
    std::fs::remove_file(work.join("eval/ivg/.done")).expect("undone");
    ok(&["experiment", "run", cfg]);
    let resumed = read(&ivg_file);
    assert!(
        resumed.starts_with(&full[..first_end]),
        "the finished row was rewritten"
    );
    assert!(untimed(&resumed) == untimed(&full));

    // A real SIGKILL during the evaluation, then a restart: nothing lost or changed.
    std::fs::remove_dir_all(work.join("eval")).expect("clear the evaluations");
    let mut child = ivg(&["experiment", "run", cfg])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let probe = work.join("eval/bone/samples.jsonl");
    let start = Instant::now();
    while !probe.exists() || read(&probe).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(300), "no progress");
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    assert!(
        !work.join("eval/ivg/.done").exists(),
        "the kill came too late to test anything"
    );
    ok(&["experiment", "run", cfg]);
    assert_same(&eval_files(&work), &before);
    assert!(untimed(&read(&results.join("samples.jsonl"))) == samples_before);
}

/// `status` lines by stage name: (status, fingerprint).
fn status(config: &Path) -> std::collections::BTreeMap<String, String> {
    let out = ok(&["experiment", "status", config.to_str().expect("utf8")]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[f.len() - 1].to_string())
        })
        .collect()
}

#[test]
fn a_changed_value_job_reruns_only_what_reads_the_value() {
    let dir = tempfile::tempdir().expect("tmp");
    let before = status(&toy_config(dir.path(), "a.toml", |t| t));
    let value = dir.path().join("value.toml");
    let text = read(&repo().join("experiments/toy/value.toml"))
        .replace("total_steps = 2", "total_steps = 3");
    std::fs::write(&value, text).expect("value job");
    let after = status(&toy_config(dir.path(), "b.toml", |t| {
        t.replace(
            "\"experiments/toy/value.toml\"",
            &format!("{:?}", value.to_str().expect("utf8")),
        )
    }));
    assert_eq!(before.len(), 25);
    let changed: Vec<&str> = before
        .iter()
        .filter(|(k, v)| after[k.as_str()] != **v)
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        changed,
        [
            "ablation/cbse_L2",
            "eval/bone",
            "eval/cbse",
            "eval/efte",
            "eval/ivg",
            "value"
        ]
    );
}

#[test]
fn bad_experiment_files_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: [(&str, Edit, &str); 5] = [
        (
            "bon.toml",
            Box::new(|t: String| t.replace("bon_n = 4", "bon_n = 5")),
            "eval.bon_n = 5",
        ),
        (
            "typo.toml",
            Box::new(|t: String| t.replace("test_prompts = 3", "test_promts = 3")),
            "test_promts",
        ),
        (
            "method.toml",
            Box::new(|t: String| t.replace("\"tuned\"]", "\"tuned\", \"cbs\"]")),
            "`cbs`",
        ),
        (
            "split.toml",
            Box::new(|t: String| t.replace("test_rows = 12", "test_rows = 4")),
            "exceed data.test_rows = 4",
        ),
        (
            "value.toml",
            Box::new(|t: String| t.replace("value_reviews = 16", "value_reviews = 4")),
            "guides.value_reviews = 4",
        ),
    ];
    for (name, edit, needle) in cases {
        let config = toy_config(dir.path(), name, edit);
        let out = ivg(&["experiment", "run", config.to_str().expect("utf8")])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(err.contains(needle) && err.contains(name), "{name}: {err}");
        assert!(
            !dir.path().join("work").exists(),
            "{name}: work started before validation"
        );
    }
}
