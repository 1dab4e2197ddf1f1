//! `run_job`: the five objectives of `ivg train` as data + model + batches +
//! held-out metrics, each handed to the one [`Driver`].

use std::collections::HashMap;
use std::path::Path;

use candle_core::DType;
use ivg_models::loader::BertWithHead;
use ivg_models::{load_causal_lm, CausalLm, LoadOptions, QuantPolicy};
use ivg_tokenize::Tokenizer;

use crate::build::{bert_classifier, causal_lm, is_bert, scalar_lm};
use crate::classifier::{
    classifier_logits, classifier_rewards, Classifier, ClassifierBatch, ClassifierReward,
    TextPairBatch,
};
use crate::data::{read_jsonl, CheckRow, LabelRow, PairRow, RewardRow, SftRow};
use crate::job::{Driver, JobEvent, JobReport, Metrics};
use crate::metrics::{classifier_metrics, lm_metrics, pair_metrics, value_metrics};
use crate::objective::{response_log_probs, Dpo, DpoBatch, Example, Sft};
use crate::prep::Encoder;
use crate::reward::{
    prefix_values, sequence_rewards, PairBatch, QValueFit, Reward, ScalarValueFit, ValueBatch,
    ValueLoss, ValueModel,
};
use crate::spec::{ModelSpec, ObjectiveSpec, TrainSpec, ValueHead, ValueLossKind};
use crate::TrainError;

/// Runs the job `spec` describes (resolved with [`TrainSpec::resolve`]) with
/// the model's tokenizer, reporting steps and evaluations to `on`.
pub fn run_job(
    spec: &TrainSpec,
    tokenizer: &Tokenizer,
    on: &dyn Fn(JobEvent<'_>),
) -> Result<JobReport, TrainError> {
    match spec.objective()? {
        ObjectiveSpec::Sft => sft(spec, tokenizer, on),
        ObjectiveSpec::Dpo { beta, reference } => {
            dpo(spec, tokenizer, *beta, reference.as_deref(), on)
        }
        ObjectiveSpec::Reward => reward(spec, tokenizer, on),
        ObjectiveSpec::Value { head, loss } => value(spec, tokenizer, *head, *loss, on),
        ObjectiveSpec::Classifier { num_labels } => classifier(spec, tokenizer, *num_labels, on),
    }
}

/// Training rows and (capped) evaluation rows of the job's data files.
fn rows<T: serde::de::DeserializeOwned + CheckRow>(
    spec: &TrainSpec,
) -> Result<(Vec<T>, Vec<T>), TrainError> {
    let train = read_jsonl(&spec.data.train)?;
    let mut eval = match &spec.data.eval {
        Some(p) => read_jsonl(p)?,
        None => Vec::new(),
    };
    if let Some(cap) = spec.data.eval_rows {
        eval.truncate(cap);
    }
    Ok((train, eval))
}

fn encoder<'a>(spec: &'a TrainSpec, tokenizer: &'a Tokenizer, path: &Path) -> Encoder<'a> {
    Encoder::new(tokenizer, &spec.data, path.display().to_string())
}

fn note_truncated(
    on: &dyn Fn(JobEvent<'_>),
    enc: &Encoder<'_>,
    what: &str,
    rows: usize,
    max: usize,
) {
    if enc.truncated > 0 {
        on(JobEvent::Note(format!(
            "{what}: {} of {rows} examples truncated to {max} tokens",
            enc.truncated
        )));
    }
}

/// `f` over `items` in chunks of `size`, results concatenated.
fn chunked<T, R>(
    items: &[T],
    size: usize,
    mut f: impl FnMut(&[T]) -> Result<Vec<R>, TrainError>,
) -> Result<Vec<R>, TrainError> {
    let mut out = Vec::with_capacity(items.len());
    for c in items.chunks(size.max(1)) {
        out.extend(f(c)?);
    }
    Ok(out)
}

fn pick<T: Clone>(items: &[T], idx: &[usize]) -> Vec<T> {
    idx.iter().map(|&i| items[i].clone()).collect()
}

fn tokens(examples: &[Example]) -> usize {
    examples
        .iter()
        .map(|e| e.prompt.len() + e.response.len())
        .sum()
}

/// Pairwise metrics of held-out pairs, `reward` scoring `bs` examples at a time.
fn pair_eval<T>(
    chosen: &[T],
    rejected: &[T],
    bs: usize,
    reward: impl Fn(&[T]) -> Result<candle_core::Tensor, TrainError>,
) -> Result<Metrics, TrainError> {
    let rc = chunked(chosen, bs, |c| host(reward(c)?))?;
    let rr = chunked(rejected, bs, |c| host(reward(c)?))?;
    let margins: Vec<f64> = rc.iter().zip(&rr).map(|(a, b)| a - b).collect();
    Ok(pair_metrics(&margins))
}

fn host(t: candle_core::Tensor) -> Result<Vec<f64>, TrainError> {
    Ok(t.detach().to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// Summed response log-probabilities and counts of every example.
fn log_probs(
    model: &CausalLm,
    examples: &[Example],
    size: usize,
) -> Result<(Vec<f64>, Vec<usize>), TrainError> {
    let mut sums = Vec::with_capacity(examples.len());
    let mut counts = Vec::with_capacity(examples.len());
    for c in examples.chunks(size.max(1)) {
        let (s, n) = response_log_probs(model, c)?;
        sums.extend(host(s)?);
        counts.extend(n);
    }
    Ok((sums, counts))
}

fn driver<'a>(
    spec: &'a TrainSpec,
    tokenizer: &'a Tokenizer,
    train_rows: usize,
    eval_rows: usize,
) -> Result<Driver<'a>, TrainError> {
    if train_rows == 0 {
        return Err(TrainError::Config(format!(
            "{}: no training rows",
            spec.data.train.display()
        )));
    }
    Ok(Driver {
        spec,
        tokenizer,
        train_rows,
        eval_rows,
    })
}

fn sft(
    spec: &TrainSpec,
    tokenizer: &Tokenizer,
    on: &dyn Fn(JobEvent<'_>),
) -> Result<JobReport, TrainError> {
    let (train_rows, eval_rows) = rows::<SftRow>(spec)?;
    let mut enc = encoder(spec, tokenizer, &spec.data.train);
    let train = enc.sft(&train_rows)?;
    note_truncated(on, &enc, "train", train.len(), spec.data.max_tokens);
    let eval = encoder(spec, tokenizer, Path::new("eval")).sft(&eval_rows)?;
    let built = causal_lm(&spec.model, tokenizer, spec.seed)?;
    let bs = spec.data.batch_size;
    let mut eval_fn = |m: &CausalLm| -> Result<Metrics, TrainError> {
        let (s, n) = log_probs(m, &eval, bs)?;
        Ok(lm_metrics(&s, &n))
    };
    let d = driver(spec, tokenizer, train.len(), eval.len())?;
    d.run(
        &Sft,
        &built,
        &mut |idx| {
            let b = pick(&train, idx);
            let n = tokens(&b);
            Ok((b, n))
        },
        (!eval.is_empty()).then_some(&mut eval_fn as _),
        on,
    )
}

/// Tokenized chosen/rejected examples of the training and evaluation pairs.
struct PairData {
    tc: Vec<Example>,
    tr: Vec<Example>,
    ec: Vec<Example>,
    er: Vec<Example>,
}

fn pair_data(
    spec: &TrainSpec,
    tokenizer: &Tokenizer,
    on: &dyn Fn(JobEvent<'_>),
) -> Result<PairData, TrainError> {
    let (train_rows, eval_rows) = rows::<PairRow>(spec)?;
    let mut enc = encoder(spec, tokenizer, &spec.data.train);
    let (tc, tr) = enc.pairs(&train_rows)?;
    note_truncated(on, &enc, "train", 2 * tc.len(), spec.data.max_tokens);
    let (ec, er) = encoder(spec, tokenizer, Path::new("eval")).pairs(&eval_rows)?;
    Ok(PairData { tc, tr, ec, er })
}

/// The frozen DPO reference: `reference`, else the (pretrained) initial model.
fn dpo_reference(spec: &TrainSpec, reference: Option<&Path>) -> Result<CausalLm, TrainError> {
    let path =
        match (reference, &spec.model) {
            (Some(p), _) => p,
            (None, ModelSpec::Pretrained { path }) => path.as_path(),
            (None, ModelSpec::Fresh { .. }) => return Err(TrainError::Config(
                "dpo from a fresh model needs objective.reference (the frozen reference policy)"
                    .into(),
            )),
        };
    let opts = LoadOptions {
        quant: QuantPolicy::Dequantize,
        ..LoadOptions::default()
    };
    Ok(load_causal_lm(path, &opts)?)
}

/// Reference log-probabilities of chosen and rejected, computed once per row.
struct RefCache<'a> {
    model: &'a CausalLm,
    chosen: HashMap<usize, f64>,
    rejected: HashMap<usize, f64>,
}

impl RefCache<'_> {
    fn get(
        &mut self,
        idx: &[usize],
        c: &[Example],
        r: &[Example],
    ) -> Result<(Vec<f64>, Vec<f64>), TrainError> {
        let missing: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|i| !self.chosen.contains_key(i))
            .collect();
        if !missing.is_empty() {
            let lc = host(response_log_probs(self.model, &pick(c, &missing))?.0)?;
            let lr = host(response_log_probs(self.model, &pick(r, &missing))?.0)?;
            for (k, &i) in missing.iter().enumerate() {
                self.chosen.insert(i, lc[k]);
                self.rejected.insert(i, lr[k]);
            }
        }
        Ok((
            idx.iter().map(|i| self.chosen[i]).collect(),
            idx.iter().map(|i| self.rejected[i]).collect(),
        ))
    }
}

fn dpo(
    spec: &TrainSpec,
    tokenizer: &Tokenizer,
    beta: f64,
    reference: Option<&Path>,
    on: &dyn Fn(JobEvent<'_>),
) -> Result<JobReport, TrainError> {
    let PairData { tc, tr, ec, er } = pair_data(spec, tokenizer, on)?;
    let built = causal_lm(&spec.model, tokenizer, spec.seed)?;
    let reference = dpo_reference(spec, reference)?;
    let bs = spec.data.batch_size;
    let all: Vec<usize> = (0..ec.len()).collect();
    let (erc, err) = RefCache {
        model: &reference,
        chosen: HashMap::new(),
        rejected: HashMap::new(),
    }
    .get(&all, &ec, &er)?;
    let mut eval_fn = |m: &CausalLm| -> Result<Metrics, TrainError> {
        let (pc, _) = log_probs(m, &ec, bs)?;
        let (pr, _) = log_probs(m, &er, bs)?;
        let margins: Vec<f64> = (0..ec.len())
            .map(|i| beta * ((pc[i] - erc[i]) - (pr[i] - err[i])))
            .collect();
        Ok(pair_metrics(&margins))
    };
    let mut cache = RefCache {
        model: &reference,
        chosen: HashMap::new(),
        rejected: HashMap::new(),
    };
    let d = driver(spec, tokenizer, tc.len(), ec.len())?;
    d.run(
        &Dpo { beta },
        &built,
        &mut |idx| {
            let (ref_chosen, ref_rejected) = cache.get(idx, &tc, &tr)?;
            let (chosen, rejected) = (pick(&tc, idx), pick(&tr, idx));
            let n = tokens(&chosen) + tokens(&rejected);
            Ok((
                DpoBatch {
                    chosen,
                    rejected,
                    ref_chosen,
                    ref_rejected,
                },
                n,
            ))
        },
        (!ec.is_empty()).then_some(&mut eval_fn as _),
        on,
    )
}

fn reward(
    spec: &TrainSpec,
    tokenizer: &Tokenizer,
    on: &dyn Fn(JobEvent<'_>),
) -> Result<JobReport, TrainError> {
    if is_bert(&spec.model)? {
        return classifier_reward(spec, tokenizer, on);
    }
    let PairData { tc, tr, ec, er } = pair_data(spec, tokenizer, on)?;
    let built = scalar_lm(&spec.model, tokenizer, spec.seed)?;
    let bs = spec.data.batch_size;
    let mut eval_fn =
        |m: &ivg_models::ScalarLm| pair_eval(&ec, &er, bs, |c| sequence_rewards(m, c));
    let d = driver(spec, tokenizer, tc.len(), ec.len())?;
    d.run(
        &Reward,
        &built,
        &mut |idx| {
            let (chosen, rejected) = (pick(&tc, idx), pick(&tr, idx));
            let n = tokens(&chosen) + tokens(&rejected);
            Ok((PairBatch { chosen, rejected }, n))
        },
        (!ec.is_empty()).then_some(&mut eval_fn as _),
        on,
    )
}

/// A reward model on a BERT encoder: the text is the templated prompt followed
/// by the response, with the encoder's special tokens and the job's truncation.
fn classifier_reward(
    spec: &TrainSpec,
    tokenizer: &Tokenizer,
    on: &dyn Fn(JobEvent<'_>),
) -> Result<JobReport, TrainError> {
    let (train_rows, eval_rows) = rows::<PairRow>(spec)?;
    let encode = |rows: &[PairRow], source: &Path| {
        let mut enc = encoder(spec, tokenizer, source);
        let side = |pick: fn(&PairRow) -> &str| -> Vec<LabelRow> {
            let text = |r: &PairRow| spec.data.template.replace("{prompt}", &r.prompt) + pick(r);
            rows.iter()
                .map(|r| LabelRow {
                    text: text(r),
                    label: 0,
                })
                .collect()
        };
        let chosen = enc.texts(&side(|r| &r.chosen))?;
        let rejected = enc.texts(&side(|r| &r.rejected))?;
        Ok::<_, TrainError>((chosen, rejected, enc))
    };
    let (tc, tr, enc) = encode(&train_rows, &spec.data.train)?;
    note_truncated(on, &enc, "train", 2 * tc.len(), spec.data.max_tokens);
    let (ec, er, _) = encode(&eval_rows, Path::new("eval"))?;
    let built = bert_classifier(&spec.model, 1, spec.seed)?;
    let bs = spec.data.batch_size;
    let mut eval_fn = |m: &BertWithHead| pair_eval(&ec, &er, bs, |c| classifier_rewards(m, c));
    let d = driver(spec, tokenizer, tc.len(), ec.len())?;
    d.run(
        &ClassifierReward,
        &built,
        &mut |idx| {
            let (chosen, rejected) = (pick(&tc, idx), pick(&tr, idx));
            let n = chosen.iter().chain(&rejected).map(Vec::len).sum();
            Ok((TextPairBatch { chosen, rejected }, n))
        },
        (!ec.is_empty()).then_some(&mut eval_fn as _),
        on,
    )
}

fn value(
    spec: &TrainSpec,
    tokenizer: &Tokenizer,
    head: ValueHead,
    kind: ValueLossKind,
    on: &dyn Fn(JobEvent<'_>),
) -> Result<JobReport, TrainError> {
    let (train_rows, eval_rows) = rows::<RewardRow>(spec)?;
    let mut enc = encoder(spec, tokenizer, &spec.data.train);
    let (train, rewards) = enc.rewarded(&train_rows)?;
    note_truncated(on, &enc, "train", train.len(), spec.data.max_tokens);
    let (eval, eval_rewards) = encoder(spec, tokenizer, Path::new("eval")).rewarded(&eval_rows)?;
    let loss = match kind {
        ValueLossKind::Regression => ValueLoss::Regression,
        ValueLossKind::Fudge => ValueLoss::Fudge,
    };
    let bs = spec.data.batch_size;
    let d = driver(spec, tokenizer, train.len(), eval.len())?;
    let mut make = |idx: &[usize]| {
        let examples = pick(&train, idx);
        let n = tokens(&examples);
        Ok((
            ValueBatch {
                examples,
                rewards: pick(&rewards, idx),
            },
            n,
        ))
    };
    let metrics = |vm: ValueModel<'_>| -> Result<Metrics, TrainError> {
        let values = chunked(&eval, bs, |c| prefix_values(&vm, c))?;
        Ok(value_metrics(&values, &eval_rewards, kind))
    };
    match head {
        ValueHead::Q => {
            let built = causal_lm(&spec.model, tokenizer, spec.seed)?;
            let mut eval_fn = |m: &CausalLm| metrics(ValueModel::Q(m));
            d.run(
                &QValueFit { loss },
                &built,
                &mut make,
                (!eval.is_empty()).then_some(&mut eval_fn as _),
                on,
            )
        }
        ValueHead::Scalar => {
            let built = scalar_lm(&spec.model, tokenizer, spec.seed)?;
            let mut eval_fn = |m: &ivg_models::ScalarLm| metrics(ValueModel::Scalar(m));
            d.run(
                &ScalarValueFit { loss },
                &built,
                &mut make,
                (!eval.is_empty()).then_some(&mut eval_fn as _),
                on,
            )
        }
    }
}

fn classifier(
    spec: &TrainSpec,
    tokenizer: &Tokenizer,
    labels: usize,
    on: &dyn Fn(JobEvent<'_>),
) -> Result<JobReport, TrainError> {
    let (train_rows, eval_rows) = rows::<LabelRow>(spec)?;
    let check = |rows: &[LabelRow], what: &Path| -> Result<(), TrainError> {
        match rows.iter().position(|r| r.label as usize >= labels) {
            Some(i) => Err(TrainError::Batch(format!(
                "{}: row {}: field `label` is {} but objective.num_labels is {labels}",
                what.display(),
                i + 1,
                rows[i].label
            ))),
            None => Ok(()),
        }
    };
    check(&train_rows, &spec.data.train)?;
    check(
        &eval_rows,
        spec.data.eval.as_deref().unwrap_or(Path::new("eval")),
    )?;
    let mut enc = encoder(spec, tokenizer, &spec.data.train);
    let train = enc.texts(&train_rows)?;
    note_truncated(on, &enc, "train", train.len(), spec.data.max_tokens);
    let eval = encoder(spec, tokenizer, Path::new("eval")).texts(&eval_rows)?;
    let train_labels: Vec<u32> = train_rows.iter().map(|r| r.label).collect();
    let eval_labels: Vec<u32> = eval_rows.iter().map(|r| r.label).collect();
    let built = bert_classifier(&spec.model, labels, spec.seed)?;
    let bs = spec.data.batch_size;
    let mut eval_fn = |m: &ivg_models::loader::BertWithHead| -> Result<Metrics, TrainError> {
        let logits = chunked(&eval, bs, |c| {
            Ok(classifier_logits(m, c)?
                .detach()
                .to_dtype(DType::F64)?
                .to_vec2::<f64>()?)
        })?;
        Ok(classifier_metrics(&logits, &eval_labels))
    };
    let d = driver(spec, tokenizer, train.len(), eval.len())?;
    d.run(
        &Classifier,
        &built,
        &mut |idx| {
            let ids = pick(&train, idx);
            let n = ids.iter().map(Vec::len).sum();
            Ok((
                ClassifierBatch {
                    ids,
                    labels: pick(&train_labels, idx),
                },
                n,
            ))
        },
        (!eval.is_empty()).then_some(&mut eval_fn as _),
        on,
    )
}
