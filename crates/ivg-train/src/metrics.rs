//! Held-out metrics of each objective, computed from plain numbers so each
//! is a formula a test can check: token NLL and perplexity (SFT), pairwise
//! loss, accuracy and margin (DPO, reward), per-position value loss and the
//! correlation of prefix values with the final reward by prefix length
//! (values), cross-entropy and accuracy (classifier).

use crate::job::Metrics;
use crate::spec::ValueLossKind;

/// Summed response log-probabilities and token counts -> `loss`, `perplexity`.
pub fn lm_metrics(sums: &[f64], counts: &[usize]) -> Metrics {
    let tokens: usize = counts.iter().sum();
    let nll = -sums.iter().sum::<f64>() / tokens.max(1) as f64;
    Metrics::from([("loss".into(), nll), ("perplexity".into(), nll.exp())])
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Margins `m` of chosen over rejected -> `loss` (mean `-log sigmoid(m)`),
/// `accuracy` (share with `m > 0`), `margin` (mean).
pub fn pair_metrics(margins: &[f64]) -> Metrics {
    let n = margins.len().max(1) as f64;
    Metrics::from([
        (
            "loss".into(),
            margins.iter().map(|&m| softplus(-m)).sum::<f64>() / n,
        ),
        (
            "accuracy".into(),
            margins.iter().filter(|&&m| m > 0.0).count() as f64 / n,
        ),
        ("margin".into(), margins.iter().sum::<f64>() / n),
    ])
}

/// Prefix lengths at which value correlations are reported.
pub const PREFIX_LENGTHS: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// Prefix values `values[i][k-1] = V(x_i, y_i<=k)` and final rewards ->
/// `loss` over every prefix (as trained), `corr@K`: Pearson correlation across
/// examples between `V` at prefix length `K` and `r` (for lengths at least 8
/// examples reach), and `corr@full` at each example's full response.
pub fn value_metrics(values: &[Vec<f64>], rewards: &[f64], kind: ValueLossKind) -> Metrics {
    let (mut loss, mut count) = (0.0, 0usize);
    for (row, &r) in values.iter().zip(rewards) {
        for &v in row {
            loss += match kind {
                ValueLossKind::Regression => (v - r).powi(2),
                ValueLossKind::Fudge => softplus(v) - v / (1.0 + (-r).exp()),
            };
            count += 1;
        }
    }
    let mut m = Metrics::from([("loss".into(), loss / count.max(1) as f64)]);
    for k in PREFIX_LENGTHS {
        let (xs, ys): (Vec<f64>, Vec<f64>) = values
            .iter()
            .zip(rewards)
            .filter_map(|(row, &r)| row.get(k - 1).map(|&v| (v, r)))
            .unzip();
        if xs.len() >= 8 {
            m.insert(format!("corr@{k}"), pearson(&xs, &ys));
        }
    }
    let last: Vec<f64> = values
        .iter()
        .map(|row| row.last().copied().unwrap_or(0.0))
        .collect();
    m.insert("corr@full".into(), pearson(&last, rewards));
    m
}

/// Pearson correlation; 0 when either side is constant.
pub fn pearson(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len().min(ys.len()) as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    sxy / (sxx * syy).sqrt()
}

/// Class logits per example and labels -> `loss` (cross-entropy), `accuracy`.
pub fn classifier_metrics(logits: &[Vec<f64>], labels: &[u32]) -> Metrics {
    let n = logits.len().max(1) as f64;
    let (mut loss, mut right) = (0.0, 0usize);
    for (row, &y) in logits.iter().zip(labels) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        loss += lse - row[y as usize];
        let best = row
            .iter()
            .enumerate()
            .fold(
                (0, f64::NEG_INFINITY),
                |b, (i, &v)| if v > b.1 { (i, v) } else { b },
            )
            .0;
        right += usize::from(best == y as usize);
    }
    Metrics::from([
        ("loss".into(), loss / n),
        ("accuracy".into(), right as f64 / n),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_on_hand_values() {
        let m = pair_metrics(&[0.0, 2.0, -1.0]);
        let want = (2f64.ln() + (1.0 + (-2f64).exp()).ln() + (1.0 + 1f64.exp()).ln()) / 3.0;
        assert!((m["loss"] - want).abs() < 1e-12);
        assert!((m["accuracy"] - 1.0 / 3.0).abs() < 1e-12);
        let c = classifier_metrics(&[vec![0.0, 1.0], vec![2.0, 0.0]], &[1, 1]);
        let want = ((1.0 + (-1f64).exp()).ln() + (1.0 + 2f64.exp()).ln()) / 2.0;
        assert!((c["loss"] - want).abs() < 1e-12 && (c["accuracy"] - 0.5).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
        assert!((pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        let lm = lm_metrics(&[-2.0, -4.0], &[1, 2]);
        assert!((lm["loss"] - 2.0).abs() < 1e-12);
    }

    #[test]
    fn value_correlation_by_prefix_length() {
        // 10 examples of 3 tokens: V at length 3 equals r, at length 1 it is noise-free anti-correlated.
        let rewards: Vec<f64> = (0..10).map(f64::from).collect();
        let values: Vec<Vec<f64>> = rewards.iter().map(|&r| vec![-r, 0.5 * r, r]).collect();
        let m = value_metrics(&values, &rewards, ValueLossKind::Regression);
        assert!((m["corr@1"] + 1.0).abs() < 1e-12);
        assert!((m["corr@2"] - 1.0).abs() < 1e-12);
        assert!((m["corr@full"] - 1.0).abs() < 1e-12);
        assert!(!m.contains_key("corr@4"));
        let want: f64 = rewards
            .iter()
            .map(|r| 4.0 * r * r + 0.25 * r * r)
            .sum::<f64>()
            / 30.0;
        assert!((m["loss"] - want).abs() < 1e-9);
    }
}
