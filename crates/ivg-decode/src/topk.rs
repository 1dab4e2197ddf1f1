//! EFT over a base model that only tells its top-k next tokens (a remote
//! inference engine): the guided logits `log p_base(x) + offset(x)` (method.md,
//! token-wise guidance; `offset` is `beta` times the guides' value, known for
//! the whole vocabulary because the guides run locally) over the candidate
//! set `S`, with what the restriction to `S` may cost.
//!
//! The exact guided policy at temperature `T` is
//! `q(x) ∝ p(x)^a w(x)^a` over the vocabulary, `a = 1/T`, `w = exp(offset)`.
//! Restricted to `S` it becomes `q_S`, and `TV(q, q_S) = q(outside S) =
//! R / (Z_S + R)` with `Z_S = sum_S p^a w^a` and `R` the same sum outside `S`,
//! which is unknown. Outside `S` every `p(x) <= p_min` (the least likely
//! candidate: `S` is the top of the base) and the outside mass is `1 - m`
//! (`m` = the base mass of `S`), so with `W = max_outside w^a`:
//! `R <= W * (1 - m) * p_min^(a-1)` for `a >= 1`, and for `a < 1`
//! `R <= W * min(n p_min^a, n^(1-a) (1-m)^a)` over the `n` outside tokens.
//! `R / (Z_S + R)` grows with `R`, so putting the bound in gives a bound on
//! the total-variation error. At `T = 0` the argmax over `S` is certified
//! (bound 0) when no outside token could beat it, else the bound is 1.

use crate::DecodeError;

/// The guided logits over the candidates, in token-id order (the order in
/// which [`crate::Sampler`] walks cumulative probabilities, so that with
/// every token a candidate the draw is the in-process one), and the cost of
/// the restriction.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateLogits {
    pub ids: Vec<u32>,
    /// `log p_base(x) + offset(x)`, unscaled (the sampler divides by `T`).
    pub logits: Vec<f32>,
    /// Base probability mass of the candidates.
    pub base_mass: f64,
    /// Upper bound on the total-variation distance between sampling from the
    /// candidates and sampling from the whole vocabulary.
    pub tv_bound: f64,
}

/// Combines the base's top-k `(id, log p)` with the guides' `offsets`
/// `(vocab,)` at sampling temperature `temperature` (0 = greedy).
pub fn combine_topk(
    base: &[(u32, f32)],
    offsets: &[f32],
    temperature: f64,
) -> Result<CandidateLogits, DecodeError> {
    let vocab = offsets.len();
    check(base, offsets, temperature)?;
    let mut cand: Vec<(u32, f32)> = base.to_vec();
    cand.sort_by_key(|&(id, _)| id);
    if cand.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(config(
            "a token id appears twice among the base's candidates",
        ));
    }
    let ids: Vec<u32> = cand.iter().map(|&(id, _)| id).collect();
    let logits: Vec<f32> = cand
        .iter()
        .map(|&(id, lp)| lp + offsets[id as usize])
        .collect();
    let base_mass: f64 = cand
        .iter()
        .map(|&(_, lp)| f64::from(lp).exp())
        .sum::<f64>()
        .min(1.0);
    let outside = vocab - cand.len();
    let max_out = max_outside(&ids, offsets);
    let tv_bound = match (outside, max_out) {
        (0, _) | (_, None) => 0.0,
        (n, Some(w_log)) => {
            let lp_min = cand
                .iter()
                .map(|&(_, lp)| f64::from(lp))
                .fold(f64::INFINITY, f64::min);
            bound(
                &logits,
                lp_min,
                1.0 - base_mass,
                n,
                f64::from(w_log),
                temperature,
            )
        }
    };
    Ok(CandidateLogits {
        ids,
        logits,
        base_mass,
        tv_bound,
    })
}

/// The largest offset of a token outside the sorted candidate ids.
fn max_outside(ids: &[u32], offsets: &[f32]) -> Option<f32> {
    let mut next = ids.iter().peekable();
    let mut best: Option<f32> = None;
    for (id, &o) in offsets.iter().enumerate() {
        if next.peek().is_some_and(|&&c| c as usize == id) {
            next.next();
            continue;
        }
        best = Some(best.map_or(o, |b| b.max(o)));
    }
    best
}

/// See the module text; all in logs to keep `p^a w^a` finite.
fn bound(logits: &[f32], lp_min: f64, rest: f64, n: usize, w_log: f64, temperature: f64) -> f64 {
    let best = logits
        .iter()
        .map(|&l| f64::from(l))
        .fold(f64::NEG_INFINITY, f64::max);
    if temperature == 0.0 {
        // An outside token has logit <= lp_min + w_log.
        return if lp_min + w_log < best { 0.0 } else { 1.0 };
    }
    let a = 1.0 / temperature;
    let rest = rest.max(0.0);
    if rest == 0.0 {
        return 0.0;
    }
    // log of the bound on sum_outside p^a.
    let log_mass = if a >= 1.0 {
        rest.ln() + (a - 1.0) * lp_min
    } else {
        let n = n as f64;
        (n.ln() + a * lp_min).min((1.0 - a) * n.ln() + a * rest.ln())
    };
    let log_r = a * w_log + log_mass;
    // log Z_S = logsumexp(a * logits).
    let log_z = best * a
        + logits
            .iter()
            .map(|&l| (a * (f64::from(l) - best)).exp())
            .sum::<f64>()
            .ln();
    // R / (Z + R) = 1 / (1 + exp(log Z - log R)).
    1.0 / (1.0 + (log_z - log_r).exp())
}

fn check(base: &[(u32, f32)], offsets: &[f32], temperature: f64) -> Result<(), DecodeError> {
    if base.is_empty() {
        return Err(config("the base gave no candidates"));
    }
    if !(temperature.is_finite() && temperature >= 0.0) {
        return Err(config(&format!(
            "temperature must be finite and >= 0, got {temperature}"
        )));
    }
    if let Some(&(id, _)) = base.iter().find(|&&(id, _)| id as usize >= offsets.len()) {
        return Err(config(&format!(
            "candidate id {id} is outside the guides' vocabulary of {}",
            offsets.len()
        )));
    }
    if let Some(&(id, lp)) = base
        .iter()
        .find(|&&(_, lp)| !(lp.is_finite() && lp <= 1e-4))
    {
        return Err(config(&format!("candidate {id} has log-probability {lp}")));
    }
    if let Some(i) = offsets.iter().position(|o| !o.is_finite()) {
        return Err(config(&format!(
            "guidance offset of token {i} is {}",
            offsets[i]
        )));
    }
    Ok(())
}

fn config(problem: &str) -> DecodeError {
    DecodeError::Config {
        field: "top-k guidance",
        problem: problem.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Sampler, SamplingConfig};

    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    fn log_softmax(l: &[f32]) -> Vec<f32> {
        let m = l.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let lse = m + l.iter().map(|&x| f64::from(x - m).exp()).sum::<f64>().ln() as f32;
        l.iter().map(|&x| x - lse).collect()
    }

    /// The base's top `k` as an engine reports them: most likely first.
    fn top_k(lp: &[f32], k: usize) -> Vec<(u32, f32)> {
        let mut all: Vec<(u32, f32)> = lp.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        all.truncate(k);
        all
    }

    fn dist(temperature: f64, logits: &[f32]) -> Vec<f64> {
        let config = SamplingConfig {
            temperature,
            top_k: None,
            top_p: None,
        };
        Sampler::new(config, 0)
            .unwrap()
            .distribution(logits)
            .unwrap()
    }

    /// Total variation between the full-vocabulary guided policy and the one
    /// over the candidates.
    fn tv(full: &[f64], c: &CandidateLogits, temperature: f64) -> f64 {
        let part = dist(temperature, &c.logits);
        let mut on = vec![0.0; full.len()];
        for (&id, &p) in c.ids.iter().zip(&part) {
            on[id as usize] = p;
        }
        0.5 * full
            .iter()
            .zip(&on)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
    }

    #[test]
    fn every_token_a_candidate_is_the_in_process_policy() {
        let vocab = 300;
        let lp = log_softmax(&values(vocab, 1, 4.0));
        let offsets = values(vocab, 2, 1.5);
        let guided: Vec<f32> = lp.iter().zip(&offsets).map(|(l, o)| l + o).collect();
        for t in [0.0, 0.7, 1.0, 1.6] {
            let c = combine_topk(&top_k(&lp, vocab), &offsets, t).unwrap();
            assert_eq!(c.ids, (0..vocab as u32).collect::<Vec<_>>());
            assert_eq!(c.logits, guided, "same logits, so the same draws");
            assert!((c.base_mass - 1.0).abs() < 1e-5);
            assert_eq!(c.tv_bound, 0.0);
            // The same seeded draws as sampling the whole vocabulary.
            let config = SamplingConfig {
                temperature: t,
                top_k: None,
                top_p: Some(0.9),
            };
            let mut a = Sampler::new(config.clone(), 7).unwrap();
            let mut b = Sampler::new(config, 7).unwrap();
            for _ in 0..50 {
                let i = a.sample(&c.logits).unwrap() as usize;
                assert_eq!(c.ids[i], b.sample(&guided).unwrap());
            }
        }
    }

    #[test]
    fn the_bound_holds_and_tightens_with_k() {
        let vocab = 2000;
        // Flat (scale 6) and peaked (scale 25, like a language model's) bases.
        for seed in 0..20 {
            let scale = if seed % 2 == 0 { 6.0 } else { 25.0 };
            let lp = log_softmax(&values(vocab, 10 + seed, scale));
            let offsets = values(vocab, 100 + seed, 2.0);
            let guided: Vec<f32> = lp.iter().zip(&offsets).map(|(l, o)| l + o).collect();
            for t in [0.5, 1.0, 1.5] {
                let full = dist(t, &guided);
                let mut last = f64::INFINITY;
                for k in [20, 100, 500] {
                    let c = combine_topk(&top_k(&lp, k), &offsets, t).unwrap();
                    let actual = tv(&full, &c, t);
                    assert!(
                        actual <= c.tv_bound + 1e-9,
                        "seed {seed} T {t} k {k}: TV {actual} > bound {}",
                        c.tv_bound
                    );
                    assert!(c.tv_bound <= last + 1e-12, "bound grew with k");
                    last = c.tv_bound;
                }
            }
        }
    }

    #[test]
    fn greedy_is_certified_only_when_no_outsider_can_win() {
        let lp = log_softmax(&[5.0, 4.0, 0.0, -1.0]);
        let c = combine_topk(&top_k(&lp, 2), &[0.0, 0.0, 0.5, 0.5], 0.0).unwrap();
        assert_eq!(c.tv_bound, 0.0);
        let c = combine_topk(&top_k(&lp, 2), &[0.0, 0.0, 6.0, 0.0], 0.0).unwrap();
        assert_eq!(c.tv_bound, 1.0, "token 2 could beat the candidates");
    }

    #[test]
    fn bad_candidates_are_named() {
        let err =
            |base: &[(u32, f32)], t| combine_topk(base, &[0.0; 4], t).unwrap_err().to_string();
        assert!(err(&[], 1.0).contains("no candidates"));
        assert!(err(&[(9, -0.1)], 1.0).contains("candidate id 9 is outside"));
        assert!(err(&[(1, f32::NAN)], 1.0).contains("log-probability NaN"));
        assert!(err(&[(1, -0.1), (1, -0.2)], 1.0).contains("appears twice"));
        assert!(err(&[(1, -0.1)], -1.0).contains("temperature"));
    }
}
