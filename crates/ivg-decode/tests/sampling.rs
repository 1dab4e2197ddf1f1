//! Public-API tests of `ivg_decode::sampling`: distributions against
//! independently computed softmaxes, truncation sets on crafted logits,
//! validation errors, a chi-square goodness-of-fit of the draws, and seeding.

use std::collections::HashSet;

use ivg_decode::{row_seed, Sampler, SamplingConfig, SamplingError};

fn config(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> SamplingConfig {
    SamplingConfig {
        temperature,
        top_k,
        top_p,
    }
}

fn dist(cfg: SamplingConfig, logits: &[f32]) -> Vec<f64> {
    Sampler::new(cfg, 0).unwrap().distribution(logits).unwrap()
}

/// Textbook softmax of `logits / t` restricted to `keep` (no max-subtraction:
/// the toy logits are small), zero elsewhere.
fn reference_softmax(logits: &[f32], t: f64, keep: &[usize]) -> Vec<f64> {
    let weights: Vec<f64> = logits.iter().map(|&l| (f64::from(l) / t).exp()).collect();
    let total: f64 = keep.iter().map(|&i| weights[i]).sum();
    let mut out = vec![0.0; logits.len()];
    for &i in keep {
        out[i] = weights[i] / total;
    }
    out
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "index {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}"
        );
    }
}

fn support(probs: &[f64]) -> Vec<usize> {
    (0..probs.len()).filter(|&i| probs[i] > 0.0).collect()
}

#[test]
fn plain_softmax_matches_reference() {
    let logits = [1.0f32, 2.0, 3.0, -1.5, 0.25, 2.0];
    let got = dist(config(1.0, None, None), &logits);
    assert_close(
        &got,
        &reference_softmax(&logits, 1.0, &[0, 1, 2, 3, 4, 5]),
        1e-12,
    );
    // Equal logits are an exactly uniform distribution; sum is 1.
    assert_eq!(dist(config(1.0, None, None), &[0.5; 4]), vec![0.25; 4]);
    assert!((got.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    // Large logits are fine thanks to max-subtraction (exp(1000) overflows).
    let shifted: Vec<f32> = logits.iter().map(|l| l + 1000.0).collect();
    assert_close(&dist(config(1.0, None, None), &shifted), &got, 1e-12);
}

#[test]
fn temperature_divides_logits() {
    let logits = [0.0f32, 1.0];
    // T = 0.5: [1, e^2] / (1 + e^2); T = 2: [1, e^0.5] / (1 + e^0.5).
    let e2 = 2f64.exp();
    let e_half = 0.5f64.exp();
    assert_close(
        &dist(config(0.5, None, None), &logits),
        &[1.0 / (1.0 + e2), e2 / (1.0 + e2)],
        1e-12,
    );
    assert_close(
        &dist(config(2.0, None, None), &logits),
        &[1.0 / (1.0 + e_half), e_half / (1.0 + e_half)],
        1e-12,
    );
    let logits = [0.3f32, -2.0, 1.7, 0.9];
    assert_close(
        &dist(config(0.7, None, None), &logits),
        &reference_softmax(&logits, 0.7, &[0, 1, 2, 3]),
        1e-12,
    );
}

#[test]
fn top_k_keeps_highest_with_lower_id_on_ties() {
    let logits = [1.0f32, 3.0, 3.0, 2.0, 3.0];
    // Three ids tie at 3.0; k = 2 keeps the two lower ids (1, 2), not 4.
    assert_eq!(
        dist(config(1.0, Some(2), None), &logits),
        vec![0.0, 0.5, 0.5, 0.0, 0.0]
    );
    // k = 4 keeps all ties and the 2.0; renormalised over the kept set only.
    let got = dist(config(0.8, Some(4), None), &logits);
    assert_close(&got, &reference_softmax(&logits, 0.8, &[1, 2, 3, 4]), 1e-12);
    // k = 1 is greedy-like; k above the vocabulary keeps everything.
    assert_eq!(
        dist(config(1.0, Some(1), None), &logits),
        vec![0.0, 1.0, 0.0, 0.0, 0.0]
    );
    assert_close(
        &dist(config(1.0, Some(50), None), &logits),
        &reference_softmax(&logits, 1.0, &[0, 1, 2, 3, 4]),
        1e-12,
    );
}

/// Logits whose softmax is (up to f32 rounding of the logs) `probs`.
fn log_logits(probs: &[f64]) -> Vec<f32> {
    probs.iter().map(|&p| p.ln() as f32).collect()
}

#[test]
fn top_p_keeps_smallest_nucleus() {
    // probabilities by id: 0.1, 0.4, 0.3, 0.2 (sorted: id1, id2, id3, id0)
    let logits = log_logits(&[0.1, 0.4, 0.3, 0.2]);
    let cases: [(f64, &[usize]); 5] = [
        (0.35, &[1]),
        (0.65, &[1, 2]),
        (0.75, &[1, 2, 3]),
        (0.95, &[0, 1, 2, 3]),
        (1.0, &[0, 1, 2, 3]),
    ];
    for (p, keep) in cases {
        let got = dist(config(1.0, None, Some(p)), &logits);
        assert_eq!(support(&got), keep.to_vec(), "top_p {p}");
        assert_close(&got, &reference_softmax(&logits, 1.0, keep), 1e-12);
    }
    // p = 1.0 is exactly the untruncated softmax.
    assert_eq!(
        dist(config(1.0, None, Some(1.0)), &logits),
        dist(config(1.0, None, None), &logits)
    );
}

#[test]
fn top_p_breaks_ties_by_lower_id() {
    // Four equal tokens (0.25 each): p = 0.3 needs two, p = 0.6 three.
    let uniform = [0.0f32; 4];
    assert_eq!(
        dist(config(1.0, None, Some(0.3)), &uniform),
        vec![0.5, 0.5, 0.0, 0.0]
    );
    let got = dist(config(1.0, None, Some(0.6)), &uniform);
    assert_close(&got, &[1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 0.0], 1e-15);
    // Ties at the top among ids 1, 2, 4: the smallest nucleus takes id 1 first.
    let logits = [0.0f32, 5.0, 5.0, 0.5, 5.0];
    assert_eq!(
        support(&dist(config(1.0, None, Some(0.1)), &logits)),
        vec![1]
    );
    assert_eq!(
        support(&dist(config(1.0, None, Some(0.5)), &logits)),
        vec![1, 2]
    );
}

#[test]
fn temperature_applies_before_top_p() {
    // T = 1: [0.665, 0.245, 0.090] -> nucleus for p = 0.8 is {0, 1} (0.910).
    // T = 0.25: logits become [8, 4, 0] -> p(0) = 0.982 -> nucleus {0}.
    let logits = [2.0f32, 1.0, 0.0];
    let warm = dist(config(1.0, None, Some(0.8)), &logits);
    assert_close(&warm, &reference_softmax(&logits, 1.0, &[0, 1]), 1e-12);
    assert_eq!(
        dist(config(0.25, None, Some(0.8)), &logits),
        vec![1.0, 0.0, 0.0]
    );
    // T = 4: [0.419, 0.326, 0.254] -> the top two give 0.745 < 0.8: all three.
    let hot = dist(config(4.0, None, Some(0.8)), &logits);
    assert_close(&hot, &reference_softmax(&logits, 4.0, &[0, 1, 2]), 1e-12);
}

#[test]
fn top_p_applies_to_renormalised_top_k() {
    // probs 0.3, 0.25, 0.2, 0.15, 0.1. Top-3 renormalised: 0.4, 0.333, 0.267.
    // p = 0.7 over the top-3 needs ids {0, 1} (0.733); over the full softmax
    // it would need {0, 1, 2} (0.75 >= 0.7 only with the third).
    let logits = log_logits(&[0.3, 0.25, 0.2, 0.15, 0.1]);
    let got = dist(config(1.0, Some(3), Some(0.7)), &logits);
    assert_close(&got, &reference_softmax(&logits, 1.0, &[0, 1]), 1e-12);
    assert_eq!(
        support(&dist(config(1.0, None, Some(0.7)), &logits)),
        vec![0, 1, 2]
    );
}

#[test]
fn greedy_is_argmax_with_lowest_id_on_ties() {
    let mut s = Sampler::new(SamplingConfig::greedy(), 3).unwrap();
    let logits = [1.0f32, 5.0, 5.0, 2.0, f32::NEG_INFINITY];
    assert_eq!(
        s.distribution(&logits).unwrap(),
        vec![0.0, 1.0, 0.0, 0.0, 0.0]
    );
    for _ in 0..10 {
        assert_eq!(s.sample(&logits).unwrap(), 1);
    }
    assert_eq!(s.sample(&[f32::NEG_INFINITY, -3.0, -7.0]).unwrap(), 1);
    assert!(s.config().is_greedy());
}

#[test]
fn neg_infinity_logits_get_zero_probability() {
    let logits = [f32::NEG_INFINITY, 0.0, 0.0, f32::NEG_INFINITY];
    assert_eq!(
        dist(config(0.9, None, None), &logits),
        vec![0.0, 0.5, 0.5, 0.0]
    );
    assert_eq!(
        dist(config(0.9, Some(3), Some(0.99)), &logits),
        vec![0.0, 0.5, 0.5, 0.0]
    );
    let mut s = Sampler::new(config(1.0, None, None), 11).unwrap();
    for _ in 0..200 {
        let id = s.sample(&logits).unwrap();
        assert!(id == 1 || id == 2, "sampled -inf token {id}");
    }
}

#[test]
fn validation_errors_name_field_and_value() {
    let cases = [
        (config(f64::NAN, None, None), "sampling.temperature", "NaN"),
        (config(-0.5, None, None), "sampling.temperature", "-0.5"),
        (
            config(f64::INFINITY, None, None),
            "sampling.temperature",
            "inf",
        ),
        (config(1.0, Some(0), None), "sampling.top_k", "0"),
        (config(1.0, None, Some(0.0)), "sampling.top_p", "0"),
        (config(1.0, None, Some(1.5)), "sampling.top_p", "1.5"),
        (config(1.0, None, Some(f64::NAN)), "sampling.top_p", "NaN"),
    ];
    for (cfg, field, value) in cases {
        let err = cfg.validate().unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(field) && message.contains(value),
            "{message}"
        );
        // (compared as text: NaN != NaN in the derived PartialEq)
        assert_eq!(Sampler::new(cfg, 0).unwrap_err().to_string(), message);
    }
    assert_eq!(
        config(-0.5, None, None).validate(),
        Err(SamplingError::InvalidTemperature { value: -0.5 })
    );
    assert!(SamplingConfig::greedy().validate().is_ok());
    assert!(config(0.7, Some(1), Some(1.0)).validate().is_ok());
}

#[test]
fn bad_logits_are_errors_naming_the_index() {
    for cfg in [SamplingConfig::greedy(), config(1.0, Some(2), Some(0.9))] {
        let mut s = Sampler::new(cfg, 0).unwrap();
        let err = s.sample(&[0.0, 1.0, f32::NAN, 2.0]).unwrap_err();
        assert!(matches!(err, SamplingError::InvalidLogit { index: 2, value } if value.is_nan()));
        assert!(err.to_string().contains("index 2"), "{err}");
        let err = s.distribution(&[0.0, f32::INFINITY]).unwrap_err();
        assert_eq!(
            err,
            SamplingError::InvalidLogit {
                index: 1,
                value: f32::INFINITY
            }
        );
        let all_neg = [f32::NEG_INFINITY; 3];
        assert_eq!(
            s.sample(&all_neg).unwrap_err(),
            SamplingError::AllNegInfinite { len: 3 }
        );
        assert_eq!(s.sample(&[]).unwrap_err(), SamplingError::EmptyLogits);
    }
}

/// Pearson's statistic for `counts` against `expected` probabilities over
/// the categories with positive expected probability; zero-probability
/// categories must never be drawn.
fn chi_square(counts: &[u64], expected: &[f64], draws: u64) -> f64 {
    let mut stat = 0.0;
    for (&c, &p) in counts.iter().zip(expected) {
        if p == 0.0 {
            assert_eq!(c, 0, "drew a zero-probability token");
            continue;
        }
        let e = p * draws as f64;
        stat += (c as f64 - e).powi(2) / e;
    }
    stat
}

fn draw_counts(cfg: SamplingConfig, seed: u64, logits: &[f32], draws: u64) -> Vec<u64> {
    let mut s = Sampler::new(cfg, seed).unwrap();
    let mut counts = vec![0u64; logits.len()];
    for _ in 0..draws {
        counts[s.sample(logits).unwrap() as usize] += 1;
    }
    counts
}

// Upper 1% critical values of the chi-square distribution, from the
// NIST/SEMATECH e-Handbook of Statistical Methods, section 1.3.6.7.4
// ("Critical Values of the Chi-Square Distribution"), column 0.99
// (= P(X > c) of 0.01): df 4 -> 13.277, df 5 -> 15.086. (For df = 4 the
// tail is exp(-c/2)(1 + c/2) = 0.0100 at c = 13.277.)
const CHI2_CRIT_1PCT_DF4: f64 = 13.277;
const CHI2_CRIT_1PCT_DF5: f64 = 15.086;

#[test]
fn draws_fit_top_k_distribution_chi_square() {
    // T = 0.8, top-k = 5 over 8 tokens -> 5 categories, 4 degrees of freedom.
    let logits = [0.5f32, -1.0, 1.2, 0.1, -0.3, 0.9, -2.0, 0.0];
    let cfg = config(0.8, Some(5), None);
    // Top 5 by logit: ids 2 (1.2), 5 (0.9), 0 (0.5), 3 (0.1), 7 (0.0).
    let expected = reference_softmax(&logits, 0.8, &[0, 2, 3, 5, 7]);
    let draws = 20_000;
    let counts = draw_counts(cfg, 2024, &logits, draws);
    let stat = chi_square(&counts, &expected, draws);
    assert!(
        stat < CHI2_CRIT_1PCT_DF4,
        "chi2 = {stat} (df 4), counts {counts:?}"
    );
}

#[test]
fn draws_fit_top_p_distribution_chi_square() {
    // probs by rank 0.3, 0.2, 0.15, 0.12, 0.08, 0.06, 0.05, 0.04 placed at
    // shuffled ids, plus -inf ids; p = 0.88 keeps six (0.91) -> df 5.
    let by_id = [0.08, 0.0, 0.3, 0.05, 0.12, 0.2, 0.04, 0.0, 0.15, 0.06];
    let logits: Vec<f32> = by_id
        .iter()
        .map(|&p: &f64| {
            if p == 0.0 {
                f32::NEG_INFINITY
            } else {
                p.ln() as f32
            }
        })
        .collect();
    let cfg = config(1.0, None, Some(0.88));
    let expected = reference_softmax(&logits, 1.0, &[0, 2, 4, 5, 8, 9]);
    let draws = 20_000;
    let counts = draw_counts(cfg, 77, &logits, draws);
    let stat = chi_square(&counts, &expected, draws);
    assert!(
        stat < CHI2_CRIT_1PCT_DF5,
        "chi2 = {stat} (df 5), counts {counts:?}"
    );
}

fn sequence(cfg: &SamplingConfig, seed: u64, logits: &[f32], n: usize) -> Vec<u32> {
    let mut s = Sampler::new(cfg.clone(), seed).unwrap();
    (0..n).map(|_| s.sample(logits).unwrap()).collect()
}

#[test]
fn same_seed_same_sequence_different_seed_different_sequence() {
    let logits: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 * 0.01).collect();
    let cfg = config(1.0, Some(500), Some(0.95));
    let a = sequence(&cfg, 42, &logits, 200);
    assert_eq!(a, sequence(&cfg, 42, &logits, 200));
    assert_ne!(a, sequence(&cfg, 43, &logits, 200));
    // A clone continues the same stream.
    let mut s = Sampler::new(cfg.clone(), 42).unwrap();
    let first = s.sample(&logits).unwrap();
    let mut fork = s.clone();
    assert_eq!(first, a[0]);
    assert_eq!(s.sample(&logits).unwrap(), fork.sample(&logits).unwrap());
}

#[test]
fn row_seeds_give_different_streams() {
    let logits = vec![0.0f32; 1000];
    let cfg = config(1.0, None, None);
    let streams: Vec<Vec<u32>> = (0..8)
        .map(|row| sequence(&cfg, row_seed(7, row), &logits, 100))
        .collect();
    for i in 0..streams.len() {
        for j in i + 1..streams.len() {
            assert_ne!(streams[i], streams[j], "rows {i} and {j} share a stream");
        }
    }
    // A row's seed depends only on (seed, row), not on the batch around it.
    assert_eq!(row_seed(7, 3), row_seed(7, 3));
    assert_ne!(row_seed(7, 3), row_seed(8, 3));
}

#[test]
fn row_seed_is_injective_on_small_ranges() {
    let mut seen = HashSet::new();
    for seed in 0..16u64 {
        for row in 0..4096usize {
            assert!(
                seen.insert(row_seed(seed, row)),
                "collision at seed {seed} row {row}"
            );
        }
    }
    // Adjacent rows differ in about half their bits (mixing, not just distinct).
    let mean_flips: f64 = (0..1000)
        .map(|r| f64::from((row_seed(1, r) ^ row_seed(1, r + 1)).count_ones()))
        .sum::<f64>()
        / 1000.0;
    assert!(
        (28.0..36.0).contains(&mean_flips),
        "mean bit flips {mean_flips}"
    );
}

#[test]
fn config_serde_round_trip_and_unknown_fields() {
    let cfg: SamplingConfig =
        serde_json::from_str(r#"{"temperature": 0.7, "top_k": 50, "top_p": 0.95}"#).unwrap();
    assert_eq!(cfg, config(0.7, Some(50), Some(0.95)));
    let cfg: SamplingConfig = serde_json::from_str(r#"{"temperature": 0.0}"#).unwrap();
    assert_eq!(cfg, SamplingConfig::greedy());
    let json = serde_json::to_string(&config(0.7, Some(50), None)).unwrap();
    assert_eq!(json, r#"{"temperature":0.7,"top_k":50}"#);
    let err =
        serde_json::from_str::<SamplingConfig>(r#"{"temperature": 0.7, "topk": 5}"#).unwrap_err();
    assert!(err.to_string().contains("topk"), "{err}");
    assert!(serde_json::from_str::<SamplingConfig>(r#"{"top_k": 5}"#).is_err());
}
