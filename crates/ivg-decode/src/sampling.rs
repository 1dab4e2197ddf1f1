//! Token sampling from one row of logits: greedy, temperature, top-k, top-p
//! (nucleus), with an injected, seeded RNG.
//!
//! Follows method.md ("temperature T (dividing the combined logits), top-k,
//! top-p, softmax, sample"): the logits are divided by `T` first, the top-k
//! tokens are kept, then the smallest top-p nucleus of the renormalised
//! top-k distribution (Holtzman et al. 2020, "The Curious Case of Neural Text
//! Degeneration"), and the result is renormalised. Randomness is injected and
//! seeded as in candle's `LogitsProcessor::from_sampling(seed, ..)` and llm.c's
//! `sample_softmax(logits, n, coin)`: each successful [`Sampler::sample`] call
//! consumes exactly one uniform `f64` ("coin") and inverts the CDF in token-id
//! order, so the RNG stream position is predictable (n calls = n draws).
//!
//! All arithmetic is in `f64` with max-subtraction. Work per call is O(vocab)
//! with no full sort, so vocabularies of 50k-262k stay cheap: top-k uses
//! `select_nth_unstable_by`; top-p locates its boundary with a mass histogram
//! and sorts (at most) the few ids around it. Ties are always broken by the
//! lower token id, so every result is deterministic.

use std::cmp::Ordering;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Why a sampling configuration or a row of logits was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error("sampling.temperature must be finite and >= 0 (0 means greedy), got {value}")]
    InvalidTemperature { value: f64 },
    #[error("sampling.top_k must be >= 1 (omit it to disable top-k), got {value}")]
    InvalidTopK { value: usize },
    #[error("sampling.top_p must be in (0, 1] (omit it or use 1.0 to disable top-p), got {value}")]
    InvalidTopP { value: f64 },
    #[error("logits are empty (vocabulary of size 0): nothing to sample")]
    EmptyLogits,
    #[error("vocabulary of {len} logits does not fit u32 token ids")]
    VocabTooLarge { len: usize },
    #[error("logit at index {index} is {value}; logits must be finite or -inf")]
    InvalidLogit { index: usize, value: f32 },
    #[error("all {len} logits are -inf: no token can be sampled")]
    AllNegInfinite { len: usize },
}

/// Typed sampling settings, as written in a config file:
/// `sampling = { temperature = 0.7, top_k = 50, top_p = 0.95 }`.
///
/// `temperature = 0.0` means greedy (argmax, lowest id on ties); `top_k` and
/// `top_p` may be omitted (no truncation). Unknown fields are rejected so a
/// typo such as `topk` cannot silently disable truncation. Deserialising does
/// not validate; [`SamplingConfig::validate`] (called by [`Sampler::new`]) does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingConfig {
    /// Divides the logits before truncation and softmax; 0.0 = greedy.
    pub temperature: f64,
    /// Keep only the `top_k` highest logits (ties: lower id first). A value
    /// above the vocabulary size keeps every token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Keep the smallest set of most probable tokens whose probability mass
    /// reaches `top_p` (ties: lower id first); 1.0 keeps every token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
}

impl SamplingConfig {
    /// Argmax decoding: temperature 0, no truncation.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: None,
        }
    }

    /// True when this configuration always picks the argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks every field; the error names the field and the offending value.
    pub fn validate(&self) -> Result<(), SamplingError> {
        let t = self.temperature;
        if !t.is_finite() || t < 0.0 {
            return Err(SamplingError::InvalidTemperature { value: t });
        }
        if let Some(k) = self.top_k {
            if k == 0 {
                return Err(SamplingError::InvalidTopK { value: k });
            }
        }
        if let Some(p) = self.top_p {
            // Written so that NaN fails too.
            if !(p > 0.0 && p <= 1.0) {
                return Err(SamplingError::InvalidTopP { value: p });
            }
        }
        Ok(())
    }
}

/// A validated [`SamplingConfig`] plus its own ChaCha8 stream.
///
/// Cloning duplicates the stream position: a clone draws the same coins as the
/// original. Give each row (or fork) its own seed with [`row_seed`] instead.
#[derive(Clone, Debug)]
pub struct Sampler {
    config: SamplingConfig,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// Validates `config` and seeds the RNG with `ChaCha8Rng::seed_from_u64(seed)`.
    pub fn new(config: SamplingConfig, seed: u64) -> Result<Self, SamplingError> {
        config.validate()?;
        Ok(Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// The same (already validated) settings with a fresh stream from `seed`.
    pub fn reseeded(&self, seed: u64) -> Self {
        Self {
            config: self.config.clone(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The validated configuration.
    pub fn config(&self) -> &SamplingConfig {
        &self.config
    }

    /// The exact distribution [`Sampler::sample`] draws from, as `f64`
    /// probabilities indexed by token id: `softmax(logits / T)` restricted to
    /// the top-k tokens, then to the smallest top-p nucleus, renormalised.
    /// Greedy gives a one-hot vector on the argmax (lowest id on ties).
    ///
    /// `logits`: `(vocab,)`. NaN and `+inf` are errors naming the index;
    /// `-inf` is allowed (probability 0) unless every logit is `-inf`.
    pub fn distribution(&self, logits: &[f32]) -> Result<Vec<f64>, SamplingError> {
        let argmax = check_logits(logits)?;
        if self.config.is_greedy() {
            let mut probs = vec![0.0; logits.len()];
            probs[argmax] = 1.0;
            return Ok(probs);
        }
        // Scaled logits s_i <= 0 (the argmax has 0), turned in place into the
        // unnormalised softmax weights exp(s_i) <= 1 of the ids that matter.
        let mut weights = scaled_logits(logits, logits[argmax], self.config.temperature);
        let top_p = self.config.top_p.filter(|&p| p < 1.0);
        if self.config.top_k.is_none() && top_p.is_none() {
            // No truncation: normalise in place, no index bookkeeping.
            weights.iter_mut().for_each(|w| *w = w.exp());
            let total: f64 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= total);
            return Ok(weights);
        }
        let mut kept = finite_ids(&weights);
        if let Some(k) = self.config.top_k {
            keep_top_k(&mut kept, &weights, k);
        }
        for &id in &kept {
            weights[id as usize] = weights[id as usize].exp();
        }
        if let Some(p) = top_p {
            keep_nucleus(&mut kept, &weights, p);
        }
        // Both truncations keep their best id first, and the best has weight
        // exp(0) = 1, so total >= 1.
        let total: f64 = kept.iter().map(|&id| weights[id as usize]).sum();
        let mut probs = vec![0.0; logits.len()];
        for &id in &kept {
            probs[id as usize] = weights[id as usize] / total;
        }
        Ok(probs)
    }

    /// Draws one token id from [`Sampler::distribution`].
    ///
    /// Consumes exactly one uniform `u` in `[0, 1)` (`rng.random::<f64>()`,
    /// 53 random bits) per successful call, greedy included, and returns the
    /// first id in id order whose cumulative probability exceeds `u`. A call
    /// that returns an error consumes no draw.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32, SamplingError> {
        let c = &self.config;
        if !c.is_greedy() && c.top_k.is_none() && c.top_p.is_none() {
            return self.sample_tempered(logits);
        }
        let probs = self.distribution(logits)?;
        let u: f64 = self.rng.random();
        let id = inverse_cdf(&probs, u);
        // check_logits guarantees the vocabulary fits u32.
        u32::try_from(id).map_err(|_| SamplingError::VocabTooLarge { len: probs.len() })
    }
}

impl Sampler {
    /// Plain temperature sampling without materialising the f64 distribution:
    /// weights `exp((l_i - max) / T)` from a vectorised f32 exponential
    /// (relative error below 5e-7, see `ivg_models::numerics`), summed in f64,
    /// then the same single uniform draw and id-order inverse CDF as
    /// [`Sampler::sample`]. This is the hot path of guided decoding (every
    /// row, every step, full vocabulary); libm's scalar `exp` made it the
    /// largest cost outside the model forwards.
    fn sample_tempered(&mut self, logits: &[f32]) -> Result<u32, SamplingError> {
        let argmax = check_logits(logits)?;
        let max = logits[argmax];
        let inv_t = (1.0 / self.config.temperature) as f32;
        let total = ivg_models::numerics::sum_exp_shifted(logits, max, inv_t);
        let u: f64 = self.rng.random();
        let target = u * total;
        let mut acc = 0.0f64;
        let mut last = argmax;
        for (i, &l) in logits.iter().enumerate() {
            let w = ivg_models::numerics::exp_nonpositive((l - max) * inv_t);
            if w > 0.0 {
                acc += w as f64;
                last = i;
                if acc > target {
                    return Ok(i as u32);
                }
            }
        }
        Ok(last as u32)
    }
}

/// Seed for row `row` of a batch whose run seed is `seed`, so that a row's
/// draws depend only on `(seed, row)` and not on which other rows share the
/// batch: `splitmix64(seed ^ splitmix64(row))`, where `splitmix64(x)` is the
/// first output of Vigna's SplitMix64 generator started at state `x`
/// (<https://prng.di.unimi.it/splitmix64.c>). Both steps are bijections of
/// `u64`, so for a fixed `seed` distinct rows always get distinct seeds, and
/// the avalanche of the finaliser decorrelates neighbouring rows and seeds.
pub fn row_seed(seed: u64, row: usize) -> u64 {
    splitmix64(seed ^ splitmix64(row as u64))
}

/// First output of SplitMix64 from state `x`: add the golden-ratio increment,
/// then the variant-13 finaliser (a bijection of `u64`).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Rejects empty, oversized, NaN, `+inf` and all-`-inf` logits; returns the
/// argmax (lowest id on ties).
fn check_logits(logits: &[f32]) -> Result<usize, SamplingError> {
    if logits.is_empty() {
        return Err(SamplingError::EmptyLogits);
    }
    if u32::try_from(logits.len() - 1).is_err() {
        return Err(SamplingError::VocabTooLarge { len: logits.len() });
    }
    let mut argmax = 0;
    for (index, &value) in logits.iter().enumerate() {
        if value.is_nan() || value == f32::INFINITY {
            return Err(SamplingError::InvalidLogit { index, value });
        }
        if value > logits[argmax] {
            argmax = index;
        }
    }
    if logits[argmax] == f32::NEG_INFINITY {
        return Err(SamplingError::AllNegInfinite { len: logits.len() });
    }
    Ok(argmax)
}

/// `(l_i - max) / T` in f64: equal to `l_i / T - max / T`, but subtracting
/// first cannot overflow to `inf - inf` for tiny `T`; the argmax maps to 0.
/// `logits`: `(vocab,)`, returns `(vocab,)`.
fn scaled_logits(logits: &[f32], max: f32, temperature: f64) -> Vec<f64> {
    let max = f64::from(max);
    logits
        .iter()
        .map(|&l| (f64::from(l) - max) / temperature)
        .collect()
}

/// Ids whose scaled logit is above `-inf` (the only ones that can get mass).
fn finite_ids(scaled: &[f64]) -> Vec<u32> {
    (0u32..)
        .zip(scaled)
        .filter(|(_, &s)| s > f64::NEG_INFINITY)
        .map(|(id, _)| id)
        .collect()
}

/// Orders ids by `key` descending, then by id ascending: "highest first,
/// lower id wins ties". A total order, so every selection is deterministic.
fn by_key_desc(key: &[f64]) -> impl Fn(&u32, &u32) -> Ordering + '_ {
    move |&a, &b| key[b as usize].total_cmp(&key[a as usize]).then(a.cmp(&b))
}

/// Keeps the `k` ids with the highest scaled logits in O(n) (no sort).
fn keep_top_k(ids: &mut Vec<u32>, scaled: &[f64], k: usize) {
    if k < ids.len() {
        ids.select_nth_unstable_by(k - 1, by_key_desc(scaled));
        ids.truncate(k);
    }
}

/// Mantissa bits dropped by the histogram key: 8 kept, 256 buckets per octave.
const BUCKET_SHIFT: u32 = 52 - 8;
/// Weights below 2^-64 (mass < 1e-14 over any vocabulary) share the last bucket.
const TAIL_BUCKET: usize = 64 << 8;

/// Histogram bucket of a weight in [0, 1]: 0 for 1.0, growing as the weight
/// shrinks. The bits of a non-negative f64 order like its value, so the key
/// is monotone and needs no logarithm.
fn bucket_of(weight: f64) -> usize {
    let one = 1.0f64.to_bits() >> BUCKET_SHIFT;
    let below_one = one.saturating_sub(weight.to_bits() >> BUCKET_SHIFT);
    usize::try_from(below_one).map_or(TAIL_BUCKET, |b| b.min(TAIL_BUCKET))
}

/// Keeps the smallest set of highest-weight ids whose probability
/// (`weight / total`) accumulates to at least `top_p`, taking ids in
/// (weight desc, id asc) order.
///
/// Nothing is sorted wholesale: one pass builds a mass histogram over
/// [`bucket_of`], the cumulative bucket masses locate the one bucket holding
/// the boundary, ids of better buckets are kept and worse ones dropped, and
/// only the boundary bucket is searched ([`nucleus_cut`]). Masses are summed
/// per bucket rather than in one running sum, which can move the boundary
/// only when the cumulative mass equals `top_p` to within rounding.
fn keep_nucleus(ids: &mut Vec<u32>, weights: &[f64], top_p: f64) {
    let total: f64 = ids.iter().map(|&id| weights[id as usize]).sum();
    let mut bucket_mass = vec![0.0f64; TAIL_BUCKET + 1];
    for &id in ids.iter() {
        let w = weights[id as usize];
        bucket_mass[bucket_of(w)] += w / total;
    }
    let mut mass_before = 0.0;
    let mut boundary_bucket = None;
    for (b, &mass) in bucket_mass.iter().enumerate() {
        if mass_before + mass >= top_p {
            boundary_bucket = Some(b);
            break;
        }
        mass_before += mass;
    }
    // Rounding kept the total below top_p: every id is needed.
    let Some(boundary_bucket) = boundary_bucket else {
        return;
    };
    let mut boundary = Vec::new();
    ids.retain(|&id| {
        let b = bucket_of(weights[id as usize]);
        if b == boundary_bucket {
            boundary.push(id);
        }
        b < boundary_bucket
    });
    let cut = nucleus_cut(&mut boundary, weights, total, mass_before, top_p);
    ids.extend_from_slice(&boundary[..cut]);
}

/// Below this many undecided ids the boundary is found by sorting them.
const NUCLEUS_SORT_BELOW: usize = 64;

/// Reorders `ids` so that its best `cut` ids (in (weight desc, id asc)
/// order) come first, and returns the smallest `cut` whose probability,
/// added to `mass_before`, reaches `top_p` (all of `ids` if none does).
///
/// A halving search narrows the range `lo..hi` of sorted positions holding
/// the boundary: each step partitions only that range around its midpoint
/// (`select_nth_unstable_by`, O(len)) and sums the better half, O(n) in all
/// (n + n/2 + ...); the last few ids are sorted and walked. This keeps a
/// boundary bucket full of ties (a flat distribution) linear too.
fn nucleus_cut(
    ids: &mut [u32],
    weights: &[f64],
    total: f64,
    mass_before: f64,
    top_p: f64,
) -> usize {
    let prob = |id: &u32| weights[*id as usize] / total;
    let order = by_key_desc(weights);
    // Invariant: ids[..lo] precede ids[lo..hi] in `order`, which precede
    // ids[hi..]; `mass` is mass_before plus ids[..lo] (< top_p).
    let (mut lo, mut hi, mut mass) = (0, ids.len(), mass_before);
    while hi - lo > NUCLEUS_SORT_BELOW {
        let mid = lo + (hi - lo) / 2;
        ids[lo..hi].select_nth_unstable_by(mid - lo, &order);
        let better: f64 = ids[lo..=mid].iter().map(prob).sum();
        if mass + better >= top_p {
            hi = mid + 1;
        } else {
            mass += better;
            lo = mid + 1;
        }
    }
    ids[lo..hi].sort_unstable_by(&order);
    for (j, id) in ids[lo..hi].iter().enumerate() {
        mass += prob(id);
        if mass >= top_p {
            return lo + j + 1;
        }
    }
    // Rounding kept the walk below top_p although the search (or the
    // histogram) saw enough mass: keep the whole undecided range.
    hi
}

/// First index whose cumulative probability exceeds `u`; if rounding leaves
/// the total at or below `u`, the last index with positive probability.
/// `probs`: `(vocab,)` with at least one positive entry.
fn inverse_cdf(probs: &[f64], u: f64) -> usize {
    let mut cumulative = 0.0;
    let mut last_positive = 0;
    for (id, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            cumulative += p;
            last_positive = id;
            if u < cumulative {
                return id;
            }
        }
    }
    last_positive
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: f64, top_k: Option<usize>, top_p: Option<f64>) -> Sampler {
        let config = SamplingConfig {
            temperature,
            top_k,
            top_p,
        };
        Sampler::new(config, 0).unwrap()
    }

    /// Naive reference: full sort by (prob desc, id asc), prefix until the
    /// cumulative probability reaches p.
    fn naive_nucleus(probs: &[f64], p: f64) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..probs.len() as u32).collect();
        ids.sort_by(|&a, &b| {
            probs[b as usize]
                .total_cmp(&probs[a as usize])
                .then(a.cmp(&b))
        });
        let mut cum = 0.0;
        let mut out = Vec::new();
        for id in ids {
            out.push(id);
            cum += probs[id as usize];
            if cum >= p {
                break;
            }
        }
        out.sort_unstable();
        out
    }

    fn support(probs: &[f64]) -> Vec<u32> {
        (0u32..)
            .zip(probs)
            .filter(|(_, &p)| p > 0.0)
            .map(|(i, _)| i)
            .collect()
    }

    /// Deterministic pseudo-random logits with many exact ties (values on a
    /// coarse grid), so chunk boundaries of the prefix sort cut through ties.
    fn grid_logits(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| f32::from(rng.random_range(0u8..40)) * 0.25 - 5.0)
            .collect()
    }

    #[test]
    fn splitmix64_matches_reference_first_output() {
        // splitmix64.c with x = 0: first next() is 0xE220A8397B1DCDAF, second
        // (state = 2 * golden) is 0x6E789E6AA1B965F4 (Vigna's reference code).
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
    }

    /// Uniform pseudo-random logits in `[lo, hi)`: mostly distinct values.
    fn uniform_logits(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(lo..hi)).collect()
    }

    fn assert_nucleus_matches_naive(logits: &[f32], temperature: f64, label: &str) {
        let full = sampler(temperature, None, None)
            .distribution(logits)
            .unwrap();
        for &p in &[
            0.001, 0.05, 0.2, 0.3, 0.5, 0.65, 0.8, 0.9, 0.95, 0.99, 0.999,
        ] {
            let got = sampler(temperature, None, Some(p))
                .distribution(logits)
                .unwrap();
            assert_eq!(support(&got), naive_nucleus(&full, p), "{label} p {p}");
        }
    }

    #[test]
    fn nucleus_matches_full_sort() {
        // Heavy exact ties: boundary buckets of ~125 equal weights, so the
        // halving search runs and its midpoints cut through ties.
        for seed in 0..3 {
            assert_nucleus_matches_naive(&grid_logits(5000, seed), 1.0, "grid");
        }
        // Distinct weights, several per histogram bucket.
        assert_nucleus_matches_naive(&uniform_logits(20_000, 4, -3.0, 3.0), 0.7, "uniform");
        // Narrow range: thousands of distinct weights in the boundary bucket.
        assert_nucleus_matches_naive(&uniform_logits(20_000, 5, 0.0, 0.01), 1.0, "narrow");
        // Peaked, with -inf and underflowing (tail bucket) tokens.
        let mut peaked = uniform_logits(3000, 6, -80.0, 0.0);
        peaked[17] = 5.0;
        peaked[900] = 4.5;
        peaked[5] = f32::NEG_INFINITY;
        assert_nucleus_matches_naive(&peaked, 1.0, "peaked");
    }

    #[test]
    fn bucket_of_is_monotone_and_clamped() {
        assert_eq!(bucket_of(1.0), 0);
        assert_eq!(bucket_of(0.5), 256);
        assert_eq!(bucket_of(0.25), 512);
        assert_eq!(bucket_of(0.0), TAIL_BUCKET);
        assert_eq!(bucket_of(2f64.powi(-70)), TAIL_BUCKET);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..10_000 {
            let (a, b): (f64, f64) = (rng.random(), rng.random());
            let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
            assert!(bucket_of(hi) <= bucket_of(lo), "{hi} {lo}");
        }
    }

    #[test]
    fn top_k_matches_full_sort_with_ties() {
        let logits = grid_logits(3000, 9);
        let mut ids: Vec<u32> = (0..3000).collect();
        ids.sort_by(|&a, &b| {
            logits[b as usize]
                .total_cmp(&logits[a as usize])
                .then(a.cmp(&b))
        });
        for &k in &[1usize, 2, 7, 100, 1234, 2999, 3000, 5000] {
            let got = sampler(0.9, Some(k), None).distribution(&logits).unwrap();
            let mut want = ids[..k.min(3000)].to_vec();
            want.sort_unstable();
            assert_eq!(support(&got), want, "k {k}");
        }
    }

    #[test]
    fn greedy_consumes_exactly_one_draw_per_call() {
        let mut s = Sampler::new(SamplingConfig::greedy(), 5).unwrap();
        let mut reference = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..3 {
            assert_eq!(s.sample(&[0.0, 2.0, 1.0]).unwrap(), 1);
            let _: f64 = reference.random();
        }
        assert_eq!(s.rng.random::<u64>(), reference.random::<u64>());
    }

    #[test]
    fn failed_call_consumes_no_draw() {
        let mut s = sampler(1.0, None, None);
        let mut reference = ChaCha8Rng::seed_from_u64(0);
        assert!(s.sample(&[0.0, f32::NAN]).is_err());
        assert_eq!(s.rng.random::<u64>(), reference.random::<u64>());
    }

    #[test]
    fn inverse_cdf_walks_in_id_order_and_skips_zeros() {
        let probs = [0.0, 0.25, 0.0, 0.5, 0.25];
        assert_eq!(inverse_cdf(&probs, 0.0), 1);
        assert_eq!(inverse_cdf(&probs, 0.2499), 1);
        assert_eq!(inverse_cdf(&probs, 0.25), 3);
        assert_eq!(inverse_cdf(&probs, 0.7499), 3);
        assert_eq!(inverse_cdf(&probs, 0.75), 4);
        // Rounding shortfall: falls back to the last positive id, never a zero.
        assert_eq!(inverse_cdf(&[0.3, 0.3, 0.0], 0.9), 1);
    }

    #[test]
    fn tiny_temperature_does_not_overflow() {
        // l / T alone would be +inf for the larger logits; subtracting the max
        // first keeps the argmax at exp(0).
        let got = sampler(1e-300, None, None)
            .distribution(&[3.0, 10.0, -2.0])
            .unwrap();
        assert_eq!(got, vec![0.0, 1.0, 0.0]);
    }
}
