//! Vectorisable elementwise math for the decoder's host-side loops (sampling
//! and log-probabilities over 50k-262k logits per row per step), where libm's
//! scalar `exp` was the largest cost outside the model forwards.

/// `e^x` for `x <= 0`, within 5e-7 relative error (a few ulp) for `x >= -87` (0 below):
/// Cody-Waite reduction `x = k ln2 + r`, `|r| <= ln2/2`, then a degree-6
/// polynomial for `e^r` and `2^k` by exponent bits. Branch-free, so loops over
/// slices auto-vectorise.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.max(-87.0);
    // Round to nearest by the 1.5 * 2^23 trick: `f32::round` is a libm call on
    // baseline x86-64 (no SSE4.1 `roundps`) and would stop vectorisation.
    const SHIFTER: f32 = 12_582_912.0;
    let k = (x * std::f32::consts::LOG2_E + SHIFTER) - SHIFTER;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((k as i32 + 127) as u32) << 23);
    p * scale
}

/// `log sum_i e^{x_i}` of a row, with the max subtracted first and the terms
/// accumulated in f64.
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return f32::NEG_INFINITY;
    }
    max + sum_exp_shifted(row, max, 1.0).ln() as f32
}

/// `sum_i e^{(x_i - shift) * scale}` for `(x_i - shift) * scale <= 0`, in f64.
/// Eight independent accumulators let the exponentials and the additions
/// vectorise (a single running f64 sum is a serial chain); accumulating in f64
/// keeps a 262k-term sum accurate to ~1e-12 relative, where f32 drifts ~1e-4.
pub fn sum_exp_shifted(row: &[f32], shift: f32, scale: f32) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0f64; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            acc[j] += exp_nonpositive((c[j] - shift) * scale) as f64;
        }
    }
    let tail: f64 = rest
        .iter()
        .map(|&v| exp_nonpositive((v - shift) * scale) as f64)
        .sum();
    acc.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let want = (x as f64).exp();
            let rel = ((exp_nonpositive(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.001_7;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-200.0) < 1e-37);
        assert!(!exp_nonpositive(f32::NEG_INFINITY).is_nan());
    }

    #[test]
    fn log_sum_exp_matches_f64() {
        let row: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32) * 0.3 - 15.0)
            .collect();
        let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
        let want = max
            + row
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln();
        assert!((log_sum_exp(&row) as f64 - want).abs() < 1e-5);
        assert_eq!(
            log_sum_exp(&[f32::NEG_INFINITY, f32::NEG_INFINITY]),
            f32::NEG_INFINITY
        );
    }
}
